"""A part of a split: `BACKEND[:OPTION=VALUE...][:DEVICE][:PRECISION]@CPUS`, parsed and checked."""

from __future__ import annotations

from dataclasses import dataclass

from xpubench.run.pins import format_cpus, parse_cpus

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8", "uint8")


@dataclass(frozen=True)
class Part:
    """One (backend, device, precision) pinned to its own CPUs; `cpus` empty: not pinned."""

    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    cpus: tuple[int, ...] = ()
    options: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> str:
        """The part as the command line writes it, e.g. `litert:cpu@1`."""
        text = ":".join([self.backend, *(f"{k}={v}" for k, v in self.options), self.device])
        if self.precision != "fp32":
            text += f":{self.precision}"
        return f"{text}@{format_cpus(self.cpus)}" if self.cpus else text

    def unavailable(self) -> str | None:
        """Why this part cannot run here (its backend's own answer), or None."""
        from xpubench.backends import get_backend

        try:
            cls = get_backend(self.backend)
        except KeyError as exc:
            return str(exc.args[0])
        return cls.unavailable_reason(self.device, self.precision, dict(self.options))


def parse_part(text: str) -> Part:
    """`onnxruntime:cpu@0`, `litert:xnnpack=off@1`, `onnxruntime:cpu:int8@0-1` -> Part; ValueError, one line."""
    body, at, cpus_text = text.strip().partition("@")
    name, *fields = body.split(":")
    if not name:
        raise ValueError(f"part {text!r} names no backend: write BACKEND[:DEVICE][:PRECISION]@CPUS, e.g. litert:cpu@1")
    precision, options, device = "fp32", [], []
    for field in fields:
        if "=" in field:
            key, _, value = field.partition("=")
            options.append((key, value))
        elif field in PRECISIONS or field.startswith("fixed<"):
            precision = field
        elif field:
            device.append(field)  # a device may hold colons itself: cuda:0, edgetpu:usb:0
    cpus = parse_cpus(cpus_text) if at else ()
    return Part(name, ":".join(device) or "cpu", precision, cpus, tuple(sorted(options)))


def parse_parts(text: str) -> tuple[Part, ...]:
    """A comma-separated list of parts; CPU lists inside a part use `-` (`0-1`), so a comma always separates."""
    parts = tuple(parse_part(p) for p in text.split(",") if p.strip())
    if not parts:
        raise ValueError("give at least one part, e.g. onnxruntime:cpu@0,litert:cpu@1")
    return check_pins(parts)


def check_pins(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """The parts, or ValueError when two are pinned to a CPU in common (they would time each other)."""
    pinned = [set(p.cpus) for p in parts if p.cpus]
    for i, a in enumerate(pinned):
        for b in pinned[i + 1:]:
            if a & b:
                raise ValueError(f"parts share CPUs {format_cpus(a & b)}: give each part its own (e.g. @0 and @1)")
    return parts


def describe(parts: tuple[Part, ...]) -> str:
    """The parts as a cell's device: `onnxruntime:cpu@0+litert:cpu@1`."""
    return "+".join(p.spec for p in parts)
