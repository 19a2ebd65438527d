"""`xpubench zoo`: the built-in models and datasets; `xpubench zoo train NAME`: train one now."""

from __future__ import annotations

import argparse

from xpubench.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the built-in models and datasets, or train one")
    p.set_defaults(execute=execute)
    actions = p.add_subparsers(dest="zoo_action", metavar="ACTION")
    train = actions.add_parser(
        "train", help="train a zoo model now (deterministic; cached, so `run` reuses it)",
        description="Train a zoo model at its default size (minutes on a laptop CPU) or the source study's "
        "size (--full), and cache it under a fingerprint of code, data and settings.",
    )
    train.add_argument("name", metavar="NAME", help="a zoo model (xpubench zoo)")
    train.add_argument("--full", action="store_true", help="the source study's input size and events")
    train.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs (default: the size's own)")
    train.set_defaults(execute=execute_train)


def execute(args: argparse.Namespace) -> int:
    from xpubench.models.training import model_dir
    from xpubench.models.zoo import DATASETS, ZOO, input_shape

    rows = [("model", "dataset", "metric", "params default/full", "default size", "full size", "")]
    for entry in ZOO.values():
        trained = (model_dir(entry) / "meta.json").exists()
        sizes = [entry.sizes[s].describe(input_shape(entry, entry.sizes[s]) or None) for s in ("default", "full")]
        params = "/".join(_count(entry.parameters.get(s)) for s in ("default", "full"))
        status = ("built" if entry.task == "none" else "trained") if trained else ""
        rows.append((entry.name, entry.dataset or "none", entry.metric or "none", params, *sizes, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("models (NAME:full runs the full size; matmul-scan and dense-scan stand for all their sides)")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("datasets")
    for name, summary in DATASETS.items():
        print(f"  {name:<8} {summary}")
    return 0


def execute_train(args: argparse.Namespace) -> int:
    import json

    from xpubench.models.training import ensure_trained, train_with_onednn
    from xpubench.models.zoo import FAMILIES, ZOO

    train_with_onednn()  # this process only trains

    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, not {args.epochs}")
    names = FAMILIES.get(args.name, (args.name,))
    for name in names:
        if name not in ZOO:
            raise UsageError(f"unknown model {name!r}: choose from {', '.join(ZOO)} (xpubench zoo)")
    for name in names:
        entry = ZOO[name]
        if entry.task == "none" and args.epochs is not None:
            raise UsageError(f"{name} is not trained (a latency scan): drop --epochs")
        folder = ensure_trained(entry, print, "full" if args.full else "default", args.epochs)
        meta = json.loads((folder / "meta.json").read_text())
        if entry.metric:
            extra = "".join(f", {k} {meta[k]:.4f}" for k in ("real_resolution", "response", "top1") if k in meta)
            print(f"{name}: {meta['parameters']:,} parameters, held-out {entry.metric} "
                  f"{meta['keras_accuracy']:.4f}{extra}, trained in {meta['train_seconds']:.1f} s{_cpu(meta)}")
            if "confusion" in meta:
                print(f"  confusion (rows true, columns predicted; {', '.join(meta['classes'])}): {meta['confusion']}")
        else:
            print(f"{name}: {meta['parameters']:,} parameters (untrained)")
        print(f"  {folder}")
    return 0


def _cpu(meta: dict) -> str:
    cpu = meta.get("train_cpu_seconds")  # absent from models trained before it was recorded
    return "" if cpu is None else f" ({cpu:.0f} s of CPU)"


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 10_000 else f"{n:,}"
