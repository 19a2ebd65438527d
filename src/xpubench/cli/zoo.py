"""`xpubench zoo`: the built-in models and datasets."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the built-in models and datasets")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.models.training import model_dir
    from xpubench.models.zoo import DATASETS, ZOO

    print("models")
    for entry in ZOO.values():
        trained = "trained" if (model_dir(entry) / "meta.json").exists() else "trains on first use"
        print(f"  {entry.name:<12} {entry.summary:<40} dataset {entry.dataset:<8} metric {entry.metric:<5} {trained}")
    print("datasets")
    for name, summary in DATASETS.items():
        print(f"  {name:<12} {summary}")
    return 0
