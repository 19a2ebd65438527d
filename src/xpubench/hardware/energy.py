"""Energy meters: RAPL (Linux powercap) for the CPU package, NVML for NVIDIA GPUs, read around a timed loop.

Use (sweep.measure_cell does this around the scenario's run):

    meter = energy.meter_for(cell.device)          # None where no meter can be read here
    idle_w = energy.idle_power(meter)              # 1 s of idle, once per meter (cached for the sweep)
    with meter.measuring() as reading:
        outcome = run_scenario(...)                # the timed run
    energy = Energy.measured(reading, idle_w, outcome.samples, outcome.batch, tdp_w, throughput_sps)

`energy.why_no_meter(device)` says in one line why a device has none. What a meter reads is the
whole package or board (other processes included); idle power, read before the sweep, is what
is subtracted. Without a meter the TDP model (`Energy.modelled`, source "modelled") stands.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
IDLE_SECONDS = 1.0
IDLE_TTL_S = 900.0  # an idle figure older than this is measured again
POLL_SECONDS = 1.0  # a RAPL counter of 2^32 uJ wraps after 14 s at 300 W: read it well within that


class MeterUnavailable(Exception):
    """No meter here; the message is one line that says why."""


@dataclass
class Reading:
    """Energy and wall time of one window between entering and leaving `Meter.measuring()`."""

    source: str
    joules: float = 0.0
    seconds: float = 0.0

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class Meter(ABC):
    """A cumulative energy counter, read in joules."""

    source: str
    where: str = ""  # which counters (a powercap folder), so two meters of one source name stay apart
    poll_s: float | None = None  # how often to read the counter during a window (None: at its ends only)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abstractmethod
    def joules(self) -> float:
        """The counter now, in joules, from an arbitrary origin; monotonic (wrap-around undone)."""

    @contextlib.contextmanager
    def measuring(self) -> Iterator[Reading]:
        """Read the counter around the block; the Reading is filled in when the block ends."""
        reading = Reading(self.source)
        stop = threading.Event()
        poller = None
        if self.poll_s:
            # Reads the counter now and then so a wrap-around within the block is not missed;
            # it sleeps in between and holds the GIL for microseconds per read.
            poller = threading.Thread(target=self._poll, args=(stop,), daemon=True, name="xpubench-energy")
        start_j, start_ns = self.joules(), time.perf_counter_ns()
        if poller:
            poller.start()
        try:
            yield reading
        finally:
            stop.set()
            if poller:
                poller.join()
            reading.joules = self.joules() - start_j
            reading.seconds = (time.perf_counter_ns() - start_ns) / 1e9

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            self.joules()

    def power_w(self, seconds: float) -> float:
        """Mean power over `seconds` of sleeping: the idle power when nothing else runs."""
        with self.measuring() as reading:
            time.sleep(seconds)
        return reading.watts


_IDLE: dict[str, float] = {}


def idle_power(meter: Meter | None, seconds: float = IDLE_SECONDS) -> float | None:
    """The meter's idle power: measured on first call (`seconds` of sleep), then kept in this process and
    for IDLE_TTL_S in the cache folder, so the workers of one sweep (a process per cell) measure it once.
    """
    if meter is None:
        return None
    key = f"{socket.gethostname()}|{meter.where}|{meter.source}"
    if key not in _IDLE:
        stored = _idle_file_read().get(key)
        if stored is not None and 0 <= time.time() - stored[1] < IDLE_TTL_S:
            _IDLE[key] = float(stored[0])
        else:
            _IDLE[key] = meter.power_w(seconds)
            _idle_file_write(key, _IDLE[key])
    return _IDLE[key]


def _idle_file() -> Path:
    from xpubench.paths import cache_dir

    return cache_dir() / "idle-power.json"


def _idle_file_read() -> dict[str, list[float]]:
    try:
        found = json.loads(_idle_file().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _idle_file_write(key: str, watts: float) -> None:
    known = {**_idle_file_read(), key: [watts, time.time()]}
    path = _idle_file()
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a second per worker, nothing more
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        staged.write_text(json.dumps(known))
        staged.replace(path)


# -- RAPL ----------------------------------------------------------------------------------------


class _Counter:
    """One powercap zone's energy_uj, unwrapped with max_energy_range_uj."""

    def __init__(self, zone: Path) -> None:
        self.path = zone / "energy_uj"
        self.range_uj = int((zone / "max_energy_range_uj").read_text())
        self.last = int(self.path.read_text())
        self.total = 0

    def read(self) -> int:
        raw = int(self.path.read_text())
        # The counter runs from 0 to max_energy_range_uj and starts again from 0.
        delta = raw - self.last if raw >= self.last else self.range_uj - self.last + raw
        self.last = raw
        self.total += delta
        return self.total


class RaplMeter(Meter):
    """The CPU packages' RAPL energy counters under a powercap folder (Intel; AMD on kernels >= 5.8)."""

    poll_s = POLL_SECONDS

    def __init__(self, root: Path | str = POWERCAP) -> None:
        super().__init__()
        root = Path(root)
        self.where = str(root.resolve())
        zones = sorted(
            (p for p in root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name)),
            key=lambda p: int(p.name.split(":")[1]),
        )
        if not zones:
            raise MeterUnavailable(f"RAPL not readable here: no {root}/intel-rapl:* zones")
        names = [(z / "name").read_text().strip() if (z / "name").is_file() else z.name for z in zones]
        # psys (platform) zones contain the packages: sum the packages only, where there are any.
        packages = [(z, n) for z, n in zip(zones, names, strict=True) if n.startswith("package")]
        chosen = packages or list(zip(zones, names, strict=True))
        try:
            self._counters = [_Counter(z) for z, _ in chosen]
        except PermissionError:
            raise MeterUnavailable(
                f"RAPL not readable here: {chosen[0][0]}/energy_uj is readable by root only "
                "(grant read access, e.g. chmod o+r, to measure energy)"
            ) from None
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"RAPL not readable here: {exc}") from None
        self.source = "rapl:" + "+".join(n for _, n in chosen)

    def joules(self) -> float:
        with self._lock:
            return sum(c.read() for c in self._counters) / 1e6


# -- NVML ----------------------------------------------------------------------------------------

_NVML_SUCCESS = 0
_NVML_NOT_SUPPORTED = 3


class _Nvml:
    """libnvidia-ml through ctypes: loaded and initialised once per process."""

    def __init__(self) -> None:
        for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise MeterUnavailable("NVML not readable here: libnvidia-ml.so.1 not found (no NVIDIA driver)")
        init = getattr(self.lib, "nvmlInit_v2", None) or self.lib.nvmlInit
        self.check(init(), "nvmlInit")

    def check(self, code: int, what: str) -> None:
        if code != _NVML_SUCCESS:
            text = self.lib.nvmlErrorString
            text.restype = ctypes.c_char_p
            raise MeterUnavailable(f"NVML not readable here: {what} failed: {text(code).decode(errors='replace')}")

    def handle(self, index: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        get = getattr(self.lib, "nvmlDeviceGetHandleByIndex_v2", None) or self.lib.nvmlDeviceGetHandleByIndex
        self.check(get(ctypes.c_uint(index), ctypes.byref(handle)), f"getting GPU {index}")
        return handle

    def name(self, handle: ctypes.c_void_p) -> str:
        buffer = ctypes.create_string_buffer(96)
        self.check(self.lib.nvmlDeviceGetName(handle, buffer, ctypes.c_uint(96)), "nvmlDeviceGetName")
        return buffer.value.decode(errors="replace")

    def energy_mj(self, handle: ctypes.c_void_p) -> int:
        value = ctypes.c_ulonglong()
        code = self.lib.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(value))
        if code == _NVML_NOT_SUPPORTED:
            raise MeterUnavailable("NVML energy counter not supported on this GPU (Volta or newer has one)")
        self.check(code, "nvmlDeviceGetTotalEnergyConsumption")
        return value.value


_NVML: _Nvml | MeterUnavailable | None = None


def _nvml() -> _Nvml:
    global _NVML
    if _NVML is None:
        try:
            _NVML = _Nvml()
        except MeterUnavailable as exc:
            _NVML = exc
        except (AttributeError, OSError) as exc:  # a library without the symbols
            _NVML = MeterUnavailable(f"NVML not readable here: {exc}")
    if isinstance(_NVML, MeterUnavailable):
        raise _NVML
    return _NVML


class NvmlMeter(Meter):
    """An NVIDIA GPU's total-energy counter (millijoules since the driver loaded; it does not wrap)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self._nvml = _nvml()
        self._handle = self._nvml.handle(index)
        self._nvml.energy_mj(self._handle)  # raises where the GPU has no counter
        self.source = f"nvml:{index}"

    def joules(self) -> float:
        return self._nvml.energy_mj(self._handle) / 1e3


def nvml_device_name(index: int) -> str | None:
    """The GPU's name as NVML gives it, or None where NVML cannot be read."""
    try:
        nvml = _nvml()
        return nvml.name(nvml.handle(index))
    except MeterUnavailable:
        return None


# -- which meter for which device ----------------------------------------------------------------

_METERS: dict[str, Meter | MeterUnavailable] = {}


def _open(device: str, powercap: Path) -> Meter:
    kind, _, rest = device.partition(":")
    if kind == "cpu":
        return RaplMeter(powercap)
    if kind == "cuda":
        return NvmlMeter(int(rest) if rest.isdigit() else 0)
    raise MeterUnavailable(f"no energy meter for {device} devices")


def _lookup(device: str, powercap: Path) -> Meter | MeterUnavailable:
    key = f"{device}@{powercap}"
    if key not in _METERS:
        try:
            _METERS[key] = _open(device, powercap)
        except MeterUnavailable as exc:
            _METERS[key] = exc
    return _METERS[key]


def meter_for(device: str, powercap: Path | str = POWERCAP) -> Meter | None:
    """The device's meter (one per device and process), or None where none can be read here."""
    found = _lookup(device, Path(powercap))
    return found if isinstance(found, Meter) else None


def why_no_meter(device: str, powercap: Path | str = POWERCAP) -> str | None:
    """None when the device has a readable meter; otherwise why not, in one line."""
    found = _lookup(device, Path(powercap))
    return str(found) if isinstance(found, MeterUnavailable) else None
