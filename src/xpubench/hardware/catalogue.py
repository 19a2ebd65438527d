"""The hardware catalogue: each device's TDP, purchase price and cloud price, and $ per million inferences.

TDP is the maker's figure for the whole package at base frequency; the K-function (TDP x time
per inference) is a model of energy, labelled as such, never a measurement. Prices are list
prices with their source named; users correct or extend them with a TOML file (see `load`).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from xpubench.errors import UsageError

KINDS = ("cpu", "gpu", "tpu", "soc", "mcu")
HOURS_PER_MONTH = 730.0  # 365 * 24 / 12
SECONDS_PER_YEAR = 365.0 * 24 * 3600


@dataclass(frozen=True)
class Entry:
    """One device. `match` are regular expressions tried (case-insensitively) on the CPU model or GPU name.

    `per_vcpu`: the TDP and prices are per logical CPU (a cloud virtual machine whose part is not
    named); they are multiplied by the logical CPUs of the host.
    """

    id: str
    name: str
    kind: str
    match: tuple[str, ...] = ()
    tdp_w: float | None = None
    price_usd: float | None = None
    cloud_usd_per_h: float | None = None
    per_vcpu: bool = False
    source: str = ""  # where the figures come from

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("tdp_w", "price_usd", "cloud_usd_per_h"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for pattern in self.match:
            re.compile(pattern)

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, flags=re.IGNORECASE) for p in self.match)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


_STUDY = "LArTPC study (Vergani 2021)"
_GCP = "GCP on-demand GPU list price, us-central1, GPU only"
_LAUNCH = "maker's launch list price"  # for processors: the 1k-unit recommended price

# Specific parts before generic ones: the first entry that matches wins.
BUILTIN: tuple[Entry, ...] = (
    # -- the source studies' devices
    Entry("i7-8550u", "Intel Core i7-8550U", "cpu", (r"i7-8550U",), 15, 409, source=_STUDY),
    Entry("tesla-p100", "NVIDIA Tesla P100 16 GB", "gpu", (r"P100",), 250, 7500, 9.99 / HOURS_PER_MONTH,
          source=f"{_STUDY}: $7,500 or $9.99/month (as $/h over {HOURS_PER_MONTH:g} h/month)"),
    Entry("coral-edgetpu", "Coral Edge TPU (USB Accelerator)", "tpu", (r"Edge ?TPU", r"Coral"), 2, 60, source=_STUDY),
    Entry("tesla-t4", "NVIDIA T4", "gpu", (r"\bT4\b",), 70, None, 0.35, source=f"TDP: NVIDIA; cloud: {_GCP}"),
    Entry("tesla-v100-sxm2", "NVIDIA V100 SXM2", "gpu", (r"V100.*SXM",), 300, None, 2.48,
          source=f"TDP: NVIDIA; cloud: {_GCP}"),
    Entry("tesla-v100", "NVIDIA V100 PCIe", "gpu", (r"V100",), 250, None, 2.48, source=f"TDP: NVIDIA; cloud: {_GCP}"),
    Entry("jetson-nano", "NVIDIA Jetson Nano", "soc", (r"Jetson Nano",), 10, 99,
          source=f"10 W mode; developer kit {_LAUNCH} (2019)"),
    Entry("jetson-tx2", "NVIDIA Jetson TX2", "soc", (r"Jetson TX2", r"\bTX2\b"), 15, 599,
          source=f"15 W mode; developer kit {_LAUNCH} (2017)"),
    Entry("jetson-xavier", "NVIDIA Jetson AGX Xavier", "soc", (r"Xavier",), 30, 1299,
          source=f"30 W mode; developer kit {_LAUNCH} (2018)"),
    Entry("quadro-k620", "NVIDIA Quadro K620", "gpu", (r"K620",), 45, source="TDP: NVIDIA"),
    Entry("stm32f4", "STM32F4 (Arm Cortex-M4, STM32F4DISCOVERY)", "mcu", (r"STM32F4", r"Cortex-?M4"), 0.15, 20,
          source="power: ~40 mA at 3.3 V, 168 MHz (datasheet, typical); board: approximate retail price"),
    # -- other GPUs these tools meet
    Entry("a100-pcie", "NVIDIA A100 PCIe", "gpu", (r"A100.*PCIe",), 300, None, 2.93,
          source=f"TDP: NVIDIA (80 GB PCIe); cloud: {_GCP} (40 GB)"),
    Entry("a100", "NVIDIA A100 SXM4", "gpu", (r"A100",), 400, None, 2.93, source=f"TDP: NVIDIA; cloud: {_GCP} (40 GB)"),
    Entry("h100-pcie", "NVIDIA H100 PCIe", "gpu", (r"H100.*PCIe",), 350, source="TDP: NVIDIA"),
    Entry("h100", "NVIDIA H100 SXM5", "gpu", (r"H100",), 700, source="TDP: NVIDIA"),
    Entry("h200", "NVIDIA H200", "gpu", (r"H200",), 700, source="TDP: NVIDIA"),
    # -- CPUs
    Entry("xeon-e3-1270v5", "Intel Xeon E3-1270 v5", "cpu", (r"Xeon.*E3-1270 v?5",), 80, 339,
          source=f"host of the edge study's Quadro K620; {_LAUNCH}"),
    Entry("i7-8650u", "Intel Core i7-8650U", "cpu", (r"i7-8650U",), 15, 426, source=_LAUNCH),
    Entry("i7-1165g7", "Intel Core i7-1165G7", "cpu", (r"i7-1165G7",), 28, 426, source=_LAUNCH),
    Entry("i9-9900k", "Intel Core i9-9900K", "cpu", (r"i9-9900K\b",), 95, 488, source=_LAUNCH),
    Entry("xeon-gold-6248", "Intel Xeon Gold 6248", "cpu", (r"Xeon.*Gold 6248\b",), 150, 3072, source=_LAUNCH),
    Entry("xeon-platinum-8380", "Intel Xeon Platinum 8380", "cpu", (r"Xeon.*Platinum 8380\b",), 270, 8099,
          source=_LAUNCH),
    Entry("epyc-7313", "AMD EPYC 7313", "cpu", (r"EPYC 7313\b",), 155, 1083, source=_LAUNCH),
    Entry("epyc-7543", "AMD EPYC 7543", "cpu", (r"EPYC 7543\b",), 225, 3761, source=_LAUNCH),
    Entry("epyc-7702", "AMD EPYC 7702", "cpu", (r"EPYC 7702\b",), 200, 6450, source=_LAUNCH),
    Entry("epyc-7742", "AMD EPYC 7742", "cpu", (r"EPYC 7742\b",), 225, 6950, source=_LAUNCH),
    Entry("epyc-7763", "AMD EPYC 7763", "cpu", (r"EPYC 7763\b",), 280, 7890, source=_LAUNCH),
    Entry("epyc-9554", "AMD EPYC 9554", "cpu", (r"EPYC 9554\b",), 360, 9087, source=_LAUNCH),
    Entry("epyc-9654", "AMD EPYC 9654", "cpu", (r"EPYC 9654\b",), 360, 11805, source=_LAUNCH),
    # A virtual machine that names no part ("AMD EPYC"): priced as the cloud sells it, per vCPU.
    Entry("epyc-vcpu", "AMD EPYC, virtual CPU (part not named)", "cpu",
          (r"^\s*AMD EPYC(?: Processor)?(?: \(with IBPB\))?\s*$",), None, None, 0.0765 / 2, per_vcpu=True,
          source="AWS c6a (3rd-gen EPYC) on-demand, us-east-1: $0.0765/h for 2 vCPU; no TDP for a vCPU"),
    Entry("apple-m1", "Apple M1", "cpu", (r"Apple M1\b",), 20, source="approximate package power"),
)


@dataclass(frozen=True)
class Interconnect:
    """A link between training workers, for the ring all-reduce model (train/scaling.py): its bandwidth per
    direction, in bytes/s, and the latency of one message, s."""

    id: str
    name: str
    bandwidth_bps: float
    latency_s: float
    source: str


INTERCONNECTS: tuple[Interconnect, ...] = (
    Interconnect("25gbe", "25 Gb Ethernet (TCP)", 25e9 / 8, 20e-6,
                 "IEEE 802.3by line rate; ~20 us per message is typical of kernel TCP on a switched LAN (approx.)"),
    Interconnect("ib-edr", "100 Gb InfiniBand (EDR, 4x)", 100e9 / 8, 1e-6,
                 "InfiniBand Trade Association EDR 4x line rate; ~1 us MPI latency (Mellanox ConnectX-4/5 figures)"),
    Interconnect("nvlink3", "NVLink 3 (A100, 12 links)", 300e9, 5e-6,
                 "NVIDIA A100 datasheet: 600 GB/s total, 300 GB/s per direction; ~5 us per NCCL step (approx.)"),
    Interconnect("tpu-v3-ici", "TPU v3 inter-chip interconnect (one link)", 656e9 / 8, 1e-6,
                 "Norrie et al., IEEE Micro 41(2) 2021, TPUv2/v3: 656 Gb/s per ICI link; ~1 us hop latency (approx.)"),
)


@dataclass(frozen=True)
class PriceSettings:
    """How a purchase becomes a price per inference: lifetime, duty and electricity."""

    lifetime_years: float = 3.0
    duty: float = 1.0  # the fraction of the lifetime spent inferring
    usd_per_kwh: float = 0.15

    def __post_init__(self) -> None:
        if self.lifetime_years <= 0 or not 0 < self.duty <= 1 or self.usd_per_kwh < 0:
            raise ValueError("price settings need lifetime_years > 0, 0 < duty <= 1 and usd_per_kwh >= 0")


@dataclass(frozen=True)
class Catalogue:
    entries: tuple[Entry, ...]
    settings: PriceSettings = field(default_factory=PriceSettings)
    files: tuple[str, ...] = ()  # the user files read, in order

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def find(self, text: str, kind: str | None = None) -> Entry | None:
        """The first entry whose pattern matches `text` (a CPU model, a GPU name)."""
        return next((e for e in self.entries if (kind is None or e.kind == kind) and e.matches(text)), None)


def user_files() -> list[Path]:
    """$XPUBENCH_CATALOGUE when set, else $XDG_CONFIG_HOME/xpubench/catalogue.toml (~/.config/...) if present."""
    if explicit := os.environ.get("XPUBENCH_CATALOGUE"):
        return [Path(explicit)]
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    default = base / "xpubench" / "catalogue.toml"
    return [default] if default.is_file() else []


def load(extra: Path | str | None = None) -> Catalogue:
    """The built-in catalogue, then the user's file (see `user_files`), then `extra` (--catalogue FILE).

    A file holds `[device.ID]` tables (fields as in `Entry`; an ID that exists is corrected field by
    field, a new one is added before the built-ins so it wins a match) and an optional `[price]`
    table (lifetime_years, duty, usd_per_kwh). A bad file raises UsageError with one line.
    """
    paths = user_files() + ([Path(extra)] if extra is not None else [])
    catalogue = Catalogue(BUILTIN)
    for path in paths:
        catalogue = _extend(catalogue, path)
    return catalogue


@cache
def default() -> Catalogue:
    """The built-in catalogue with the user's file, read once per process."""
    return load()


def _extend(catalogue: Catalogue, path: Path) -> Catalogue:
    if not path.is_file():
        raise UsageError(f"catalogue file {path} not found")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"catalogue file {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    unknown = set(data) - {"device", "price"}
    if unknown:
        tables = ", ".join(sorted(unknown))
        raise UsageError(f"catalogue file {path}: unknown table(s) {tables}: use [device.ID] and [price]")
    entries = list(catalogue.entries)
    added: list[Entry] = []
    allowed = {f.name for f in fields(Entry)} - {"id"}
    for entry_id, values in (data.get("device") or {}).items():
        if not isinstance(values, dict):
            raise UsageError(f"catalogue file {path}: [device.{entry_id}] must be a table")
        bad = set(values) - allowed
        if bad:
            raise UsageError(
                f"catalogue file {path}: [device.{entry_id}] has unknown key(s) {', '.join(sorted(bad))} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        values = {k: (tuple(v) if k == "match" else v) for k, v in values.items()}
        try:
            old = next((i for i, e in enumerate(entries) if e.id == entry_id), None)
            if old is not None:
                entries[old] = replace(entries[old], **values)
            else:
                values.setdefault("name", entry_id)
                values.setdefault("kind", "cpu")
                values.setdefault("match", (re.escape(values["name"]),))
                added.append(Entry(id=entry_id, **values))
        except (TypeError, ValueError, re.error) as exc:
            raise UsageError(f"catalogue file {path}: [device.{entry_id}]: {exc}") from None
    settings = catalogue.settings
    if price := data.get("price"):
        try:
            settings = replace(settings, **price)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"catalogue file {path}: [price]: {exc}") from None
    return Catalogue(tuple(added + entries), settings, (*catalogue.files, str(path)))


def cpu_tdp_w(model_name: str, catalogue: Catalogue | None = None) -> float | None:
    """The catalogue's TDP for this CPU model, or None when it does not know the part."""
    entry = (catalogue or default()).find(model_name, kind="cpu")
    if entry is None or entry.tdp_w is None:
        return None
    return entry.tdp_w * (_vcpus() if entry.per_vcpu else 1)


def gpu_name(index: int) -> str | None:
    """The NVIDIA GPU's name (NVML, else the driver's /proc entries in bus order), or None."""
    from xpubench.hardware import energy

    name = energy.nvml_device_name(index)
    if name:
        return name
    folder = Path("/proc/driver/nvidia/gpus")
    if not folder.is_dir():
        return None
    buses = sorted(folder.iterdir())
    if index >= len(buses):
        return None
    info = buses[index] / "information"
    if not info.is_file():
        return None
    for line in info.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model":
            return value.strip()
    return None


def entry_for_device(device: str, catalogue: Catalogue | None = None) -> Entry | None:
    """The catalogue entry for a cell's device: cpu -> this host's CPU, cuda:N -> that GPU, edgetpu -> Coral.

    Emulated devices (mcu-emulated, fpga-emulated) and remote servers have none: no price.
    """
    from xpubench.hardware import host

    catalogue = catalogue or default()
    kind, _, rest = device.partition(":")
    if kind == "cpu":
        return catalogue.find(host.cpu_model(), kind="cpu")
    if kind == "cuda":
        name = gpu_name(int(rest) if rest.isdigit() else 0)
        return catalogue.find(name, kind="gpu") if name else None
    if kind == "edgetpu":
        return catalogue.get("coral-edgetpu")
    return None


def _vcpus() -> int:
    from xpubench.hardware import host

    return host.logical_cpus()


def price_per_million(
    entry: Entry,
    per_sample_s: float,
    energy_j: float | None = None,
    settings: PriceSettings | None = None,
) -> dict[str, Any] | None:
    """$ per million inferences on `entry`, taking `per_sample_s` each.

    Owned: the purchase price spread over the lifetime at the stated duty, plus the energy (the
    measured joules per inference when given, else TDP x time) at the stated $/kWh. Cloud: the
    price per hour x time per inference. `usd_per_million` is the owned figure where a purchase
    price is known, else the cloud one; `basis` says which and with what assumptions. None when
    the entry has no price at all.
    """
    settings = settings or PriceSettings()
    scale = _vcpus() if entry.per_vcpu else 1
    found: dict[str, Any] = {"device": entry.id, "device_name": entry.name, "source": entry.source}
    if entry.price_usd is not None:
        seconds = settings.lifetime_years * SECONDS_PER_YEAR * settings.duty
        capital = entry.price_usd * scale / seconds * per_sample_s
        modelled = energy_j is None
        joules = energy_j if energy_j is not None else (entry.tdp_w * scale * per_sample_s if entry.tdp_w else 0.0)
        electricity = joules / 3.6e6 * settings.usd_per_kwh
        found["owned_usd_per_million"] = (capital + electricity) * 1e6
        if not modelled:
            energy_words = f"measured energy at ${settings.usd_per_kwh:g}/kWh"
        elif entry.tdp_w:
            energy_words = f"TDP x time energy at ${settings.usd_per_kwh:g}/kWh"
        else:
            energy_words = "no energy (TDP unknown)"
        found["owned_basis"] = (
            f"purchase ${entry.price_usd * scale:,.0f} over {settings.lifetime_years:g} y at "
            f"{settings.duty:.0%} duty + {energy_words}"
        )
    if entry.cloud_usd_per_h is not None:
        per_h = entry.cloud_usd_per_h * scale
        found["cloud_usd_per_million"] = per_h / 3600 * per_sample_s * 1e6
        found["cloud_basis"] = f"cloud ${per_h:.4g}/h x time per inference"
    if "owned_usd_per_million" in found:
        found["usd_per_million"], found["basis"] = found["owned_usd_per_million"], found["owned_basis"]
    elif "cloud_usd_per_million" in found:
        found["usd_per_million"], found["basis"] = found["cloud_usd_per_million"], found["cloud_basis"]
    else:
        return None
    return found


def price_for_cell(
    device: str,
    per_sample_ms: float | None,
    energy_j: float | None = None,
    catalogue: Catalogue | None = None,
    throughput_sps: float | None = None,
) -> dict[str, Any] | None:
    """The `price` record of a cell: None when the device is not in the catalogue, has no price, or
    the cell has no time per inference. The time per inference is 1 / throughput where the cell has
    one (the device's time per inference at the load it ran, as the sweep measures it), else
    `per_sample_ms`; the record says which (`time_per_inference_ms`, `time_basis`)."""
    if throughput_sps:
        seconds, basis = 1.0 / throughput_sps, "1 / throughput"
    elif per_sample_ms is not None:
        seconds, basis = per_sample_ms / 1e3, "median latency / batch"
    else:
        return None
    catalogue = catalogue or default()
    entry = entry_for_device(device, catalogue)
    if entry is None:
        return None
    found = price_per_million(entry, seconds, energy_j, catalogue.settings)
    if found is not None:
        found.update(time_per_inference_ms=seconds * 1e3, time_basis=basis)
    return found
