"""`xpubench devices`: the hardware found, and whether each backend can run here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xpubench.hardware.catalogue import Catalogue, Entry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the hardware and the backends available here")
    p.add_argument("--catalogue", type=Path, default=None, metavar="FILE",
                   help="a TOML file that extends the hardware catalogue (also read: $XPUBENCH_CATALOGUE, "
                   "else ~/.config/xpubench/catalogue.toml)")
    p.add_argument("--list-catalogue", action="store_true", help="also list every catalogue entry")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.backends import backend_names, get_backend
    from xpubench.hardware import catalogue, host

    known = catalogue.load(args.catalogue)
    model = host.cpu_model()
    tdp = catalogue.cpu_tdp_w(model, known)
    print("devices")
    print(
        f"  cpu      {model}: {host.logical_cpus()} logical CPUs, {host.physical_cores() or '?'} cores, "
        f"TDP {f'{tdp:g} W' if tdp else 'unknown (give --tdp W to run)'}"
    )
    _describe("cpu", known)
    from xpubench.hardware.gpu import cuda_unavailable_reason, nvidia_gpu_count

    gpu_reason = cuda_unavailable_reason()
    print(f"  cuda     {gpu_reason or f'{nvidia_gpu_count()} NVIDIA GPU(s)'}")
    for index in range(0 if gpu_reason else nvidia_gpu_count()):
        _describe(f"cuda:{index}", known)
    if args.list_catalogue:
        print(f"catalogue (price: {known.settings.lifetime_years:g} y at {known.settings.duty:.0%} duty, "
              f"${known.settings.usd_per_kwh:g}/kWh{'; files: ' + ', '.join(known.files) if known.files else ''})")
        for entry in known.entries:
            print(f"  {entry.id:<20} {_money(entry)}  {entry.name}")
    print("backends")
    for name in backend_names():
        try:
            cls = get_backend(name)
        except Exception as exc:  # a third-party entry point that fails to import
            print(f"  {name:<12} unavailable  cannot be loaded: {exc}")
            continue
        reason = cls.unavailable_reason(cls.devices[0], cls.precisions[0])
        version = cls.version() or ""
        formats = "/".join(cls.formats)
        if reason:
            print(f"  {name:<12} unavailable  {reason}")
            continue
        usable = [d for d in cls.devices if not cls.unavailable_reason(d, cls.precisions[0])]
        emulated = " (emulated)" if cls.emulated else ""
        capabilities = f"loads {formats}; on {', '.join(usable)}{emulated}; {', '.join(cls.precisions)}"
        print(f"  {name:<12} available    {version:<10} {capabilities}")
        for device in cls.devices:
            if device not in usable:
                why = cls.unavailable_reason(device, cls.precisions[0])
                print(f"  {'':<12} {'':<12} {'':<10} not on {device}: {why}")
    return 0


def _money(entry: Entry) -> str:
    tdp = f"{entry.tdp_w:g} W" if entry.tdp_w else "? W"
    price = f"${entry.price_usd:,.0f}" if entry.price_usd else "-"
    cloud = f"${entry.cloud_usd_per_h:.4g}/h" if entry.cloud_usd_per_h else "-"
    per = " per vCPU" if entry.per_vcpu else ""
    return f"{tdp:>7} {price:>8} {cloud:>9}{per}"


def _describe(device: str, known: Catalogue) -> None:
    """The device's catalogue entry and energy meter, one line each."""
    from xpubench.hardware import catalogue, energy

    entry = catalogue.entry_for_device(device, known)
    where = f"{entry.id}: {_money(entry).strip()} ({entry.source})" if entry else "not in the catalogue (no price)"
    print(f"  {'':<8} catalogue {where}")
    meter = energy.meter_for(device)
    found = meter.source if meter else f"{energy.why_no_meter(device)}; modelled as TDP x time"
    print(f"  {'':<8} energy    {found}")
