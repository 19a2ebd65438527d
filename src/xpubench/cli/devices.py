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
    from xpubench.hardware.gpu import cuda_unavailable_reason, nvidia_gpu_count

    gpu_reason = cuda_unavailable_reason()
    print(f"  cuda     {gpu_reason or f'{nvidia_gpu_count()} NVIDIA GPU(s)'}")
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
