"""The `xpubench` command: one module per subcommand, each imported without any ML framework."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from xpubench.cli import compare, data, devices, export, load, report, run, serve, show, split, study, train, zoo
from xpubench.cli.options import SETTING_FLAGS
from xpubench.core.errors import InvalidSetting
from xpubench.errors import UsageError
from xpubench.version import __version__

COMMANDS = (run, devices, zoo, show, compare, report, data, study, train, split, serve, load, export)
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look, and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="xpubench",
        description="Benchmark a trained model on every runtime and device this machine can reach.",
    )
    parser.add_argument("--version", action="version", version=f"xpubench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.execute(args)
    except (UsageError, InvalidSetting) as exc:
        if args.debug:
            traceback.print_exc()
        # A library setting out of range is named by the option that sets it.
        flag = f"{SETTING_FLAGS.get(exc.setting, exc.setting)}: " if isinstance(exc, InvalidSetting) else ""
        print(f"xpubench {args.command}: error: {flag}{exc}", file=sys.stderr)
        return EXIT_USAGE
