"""`xpubench data`: list the physics data generators and write their events to .npz files."""

from __future__ import annotations

import argparse
from pathlib import Path

from xpubench.errors import UsageError

FLOAT16_ABOVE_BYTES = 1 << 30  # an x bigger than this as float32 is written as float16


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list the physics data generators, generate events into .npz files",
                       description="Simulated physics datasets: LArTPC neutrino images, calorimeter showers, "
                       "HCAL channels and jet images. Deterministic: the same seed gives the same arrays.")
    p.set_defaults(execute=lambda args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the generators, their classes and sizes")
    listing.set_defaults(execute=execute_list)
    gen = actions.add_parser(
        "generate", help="generate events into FILE.npz (arrays x and y)",
        description="Generate events into an .npz file with arrays x (inputs) and y (class labels or targets). "
        "An x over 1 GiB as float32 is written as float16 (np.load(...)['x'].astype('float32') restores it).",
    )
    gen.add_argument("name", metavar="NAME", help="generator (xpubench data list)")
    gen.add_argument("--events", type=int, default=10000, metavar="N", help="number of events (default: 10000)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    gen.add_argument("--out", type=Path, default=None, metavar="FILE.npz", help="output file (default: NAME.npz)")
    gen.add_argument("--side", type=int, default=None, metavar="N",
                     help="image side for lartpc (default 200) and jets (default 32)")
    gen.add_argument("--png", type=Path, default=None, metavar="DIR", help="also write example displays as PNG")
    gen.set_defaults(execute=execute_generate)


def execute_list(args: argparse.Namespace) -> int:
    from xpubench.data import GENERATORS

    for g in GENERATORS.values():
        target = "classes " + " / ".join(g.classes) if g.classes else "regression"
        print(f"  {g.name:<8} {g.summary:<70} {target}")
    return 0


def execute_generate(args: argparse.Namespace) -> int:
    import importlib
    import inspect
    import time

    import numpy as np

    from xpubench.data import generator

    entry = generator(args.name)
    if args.events < 1:
        raise UsageError(f"--events must be at least 1, got {args.events}")
    module = importlib.import_module(entry.module)
    size: dict[str, int] = {}
    if args.side is not None:
        if "side" not in inspect.signature(module.generate).parameters:
            raise UsageError(f"{entry.name} has a fixed size: --side applies to lartpc and jets")
        if args.side < 8:
            raise UsageError(f"--side must be at least 8, got {args.side}")
        size["side"] = args.side
    out = args.out if args.out is not None else Path(f"{entry.name}.npz")
    if out.suffix != ".npz":
        raise UsageError(f"--out must name an .npz file, got {out}")
    if not out.parent.exists():
        raise UsageError(f"folder {out.parent} does not exist")

    start = time.perf_counter()
    if hasattr(module, "iter_chunks"):
        chunks = module.iter_chunks(args.events, args.seed, **size)
    else:
        x, y = module.generate(args.events, args.seed, **size)
        chunks = iter([(x, y)])
    first = next(chunks)
    shape = (args.events, *first[0].shape[1:])
    float16 = 4 * int(np.prod(shape)) > FLOAT16_ABOVE_BYTES
    examples = (first[0][:64].copy(), first[1][:64].copy())  # the chunk buffer is reused
    y_all = _write_npz(out, shape, np.float16 if float16 else np.float32, _chained(first, chunks))
    seconds = time.perf_counter() - start

    if entry.classes:
        counts = np.bincount(y_all, minlength=len(entry.classes))
        target = "classes " + ", ".join(f"{c} {n}" for c, n in zip(entry.classes, counts, strict=True))
    else:
        target = f"y {y_all.min():.3g}..{y_all.max():.3g}"
    dtype = "float16 (over 1 GiB as float32)" if float16 else "float32"
    print(f"{entry.name}: {args.events} events, x {shape} {dtype}, {target}; {seconds:.1f} s -> {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)")
    if args.png is not None:
        from xpubench.data.display import save_examples

        for path in save_examples(entry.name, examples[0].astype(np.float32), examples[1], args.png):
            print(f"  wrote {path}")
    return 0


def _chained(first, rest):  # noqa: ANN001, ANN202 - (x, y) chunks
    yield first
    yield from rest


def _write_npz(path: Path, shape: tuple[int, ...], dtype: type, chunks) -> object:  # noqa: ANN001
    """Stream x chunk by chunk into an uncompressed .npz (what np.savez writes), then y; return y.

    A second thread writes chunk k while this one simulates and converts chunk k+1: on two cores the disk
    write (about 2.4 GB for 10k LArTPC events) then costs little wall time. Written to a temporary name
    first, so an interrupted run leaves no truncated file behind.
    """
    import zipfile
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np

    partial = path.with_name(path.name + ".partial")
    labels = []
    written = 0
    try:
        with (
            zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
            ThreadPoolExecutor(1) as writer,
        ):
            with archive.open("x.npy", "w", force_zip64=True) as stream:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                          "shape": shape}
                np.lib.format.write_array_header_2_0(stream, header)
                pending: Future | None = None
                # Two output buffers, reused: one being written while the next chunk is converted into the
                # other (the generator reuses its own buffer too). Fresh arrays per chunk cost page faults.
                buffers: list[np.ndarray] = []
                try:
                    for k, (x, y) in enumerate(chunks):
                        if not buffers:  # the first chunk is the largest
                            buffers = [np.empty(x.shape, dtype), np.empty(x.shape, dtype)]
                        block = buffers[k % 2][: len(x)]
                        np.copyto(block, x, casting="same_kind")  # the write in flight reads the other buffer
                        if pending is not None:
                            pending.result()  # at most one chunk in flight: memory stays bounded
                        pending = writer.submit(stream.write, block.data)
                        labels.append(np.array(y))
                        written += len(y)
                finally:
                    if pending is not None:
                        pending.result()  # before the stream closes, even when the generator failed
            y_all = np.concatenate(labels)
            with archive.open("y.npy", "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, y_all)
        if written != shape[0]:
            raise RuntimeError(f"generator gave {written} events, expected {shape[0]}")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return y_all
