"""`xpubench study NAME`: a source study's experiments measured on this machine; one module per study."""

from __future__ import annotations

import argparse

from xpubench.cli import study_hetero, study_seeds, study_sonic

STUDIES = (study_seeds, study_sonic, study_hetero)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="a source study's experiments measured here, beside its own figures",
        description="Measure a source study's experiments on this machine and print them beside the study's own "
        "figures. Each study is stored as runs that `xpubench show` / `report` / `compare` read.",
    )
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True, parser_class=type(p))
    for study in STUDIES:
        study.add_parser(studies)
