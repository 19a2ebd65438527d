"""`xpubench devices`: the hardware found, and whether each backend can run here."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the hardware and the backends available here")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.backends import backend_names, get_backend
    from xpubench.hardware import catalogue, host

    model = host.cpu_model()
    tdp = catalogue.cpu_tdp_w(model)
    print("devices")
    print(
        f"  cpu      {model}: {host.logical_cpus()} logical CPUs, {host.physical_cores() or '?'} cores, "
        f"TDP {f'{tdp:g} W' if tdp else 'unknown (give --tdp W to run)'}"
    )
    print("backends")
    for name in backend_names():
        try:
            cls = get_backend(name)
        except Exception as exc:  # a third-party entry point that fails to import
            print(f"  {name:<12} unavailable  cannot be loaded: {exc}")
            continue
        reason = cls.unavailable_reason()
        version = cls.version() or ""
        formats = "/".join(cls.formats)
        if reason:
            print(f"  {name:<12} unavailable  {reason}")
        else:
            capabilities = f"loads {formats}; {', '.join(cls.devices)}; {', '.join(cls.precisions)}"
            print(f"  {name:<12} available    {version:<10} {capabilities}")
    return 0
