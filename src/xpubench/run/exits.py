"""The exit codes of the commands that measure, from the statuses of a run's stored cells: one rule for
`xpubench run`, `study`, `train` and `split`, so that a CI job can tell a clean run from a partial one."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0  # every requested cell was measured `ok`
EXIT_USAGE = 2  # bad input: one line on stderr, nothing stored
EXIT_SOME_NOT_OK = 3  # some cells ended `failed` or `unavailable` (the table and --json say which and why)
EXIT_NONE_OK = 4  # no cell was measured `ok` (or there was none)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it
EXIT_TERMINATED = 143  # SIGTERM

CODES = (
    (EXIT_OK, "every requested cell measured ok"),
    (EXIT_USAGE, "usage error (one line on stderr; nothing stored)"),
    (EXIT_SOME_NOT_OK, "some cells failed or unavailable (the table and --json say which)"),
    (EXIT_NONE_OK, "no cell measured ok"),
    (EXIT_INTERRUPTED, "interrupted by Ctrl-C"),
    (EXIT_TERMINATED, "stopped by SIGTERM (what was measured is stored: --resume RUN_ID)"),
)


def exit_code(statuses: Iterable[str]) -> int:
    """The exit code of a finished run whose cells ended with `statuses` (ok | failed | unavailable)."""
    statuses = list(statuses)
    ok = statuses.count("ok")
    if statuses and ok == len(statuses):
        return EXIT_OK
    return EXIT_SOME_NOT_OK if ok else EXIT_NONE_OK


def epilog() -> str:
    """The codes as `--help` lists them."""
    return "exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in CODES)
