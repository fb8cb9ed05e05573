"""The ``blockout`` command line: the parser, its global options and the error handling of :func:`main`.

Each subcommand lives in its own module ``blockout/cmd_<name>.py`` with ``add_<name>(subparsers)``
(builds its parser and sets ``handler``) and ``cmd_<name>(args)``; register it in :data:`COMMANDS`.
Command modules import their heavy dependencies (torch, the analysis stack) inside the handler,
so building the parser (``blockout --help``) stays fast. A :class:`UserError` anywhere becomes one line
``blockout: error: <message>`` on stderr and exit code 2; an interrupted training exits 130.

``python -m blockout.cli ...`` and the ``blockout`` console script are the same program, and the
same command works under ``torchrun`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from blockout.cmd_compare import add_compare
from blockout.cmd_compile import add_compile
from blockout.cmd_dashboard import add_dashboard
from blockout.cmd_demo import add_demo
from blockout.cmd_export import add_export
from blockout.cmd_inspect import add_inspect
from blockout.cmd_report import add_report
from blockout.cmd_reproduce import add_reproduce
from blockout.cmd_train import FLAG_GROUPS, add_config_flags, add_train, config_from_args, flag_help  # noqa: F401
from blockout.cmd_train import explicit_options as _explicit  # noqa: F401
from blockout.errors import UserError
from blockout.exitcodes import EXIT_INTERRUPTED, EXIT_USER_ERROR


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with one-line errors (``blockout train: error: ...``) and exit code 2 (also the
    examples' parser)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------
# entry point

#: Subcommands: each adds its parser and sets ``handler``. Append new ones here.
COMMANDS: list[Callable] = [add_train, add_inspect, add_demo, add_reproduce, add_compare, add_export,
                            add_dashboard, add_report, add_compile]

#: Where the names this module held before each command got its own module live now: still
#: importable from here (``from blockout.cli import inspect_run``), resolved on first use.
_MOVED = {
    **dict.fromkeys(("cmd_inspect", "inspect_run"), "blockout.cmd_inspect"),
    **dict.fromkeys(("format_inspect", "format_summary"), "analysis.summary_report"),
    **dict.fromkeys(("cmd_demo", "demo_config", "run_is_complete", "DEMO_NAME"), "blockout.cmd_demo"),
    "cmd_reproduce": "blockout.cmd_reproduce",
    "cmd_compare": "blockout.cmd_compare",
    "cmd_export": "blockout.cmd_export",
    **dict.fromkeys(("cmd_dashboard", "dashboard_command", "server_answers", "stop_child", "STOP_SIGNALS"),
                    "blockout.cmd_dashboard"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _limit_names() -> list[str]:
    from analysis.limits import LIMITS

    return sorted(LIMITS)


def _limit(text: str) -> tuple[str, int]:
    """``NAME=N`` of :data:`analysis.limits.LIMITS` (argparse type: one-line error otherwise)."""
    name, sep, value = text.partition("=")
    name = name.strip().removeprefix("--")
    if not sep or name not in _limit_names():
        raise argparse.ArgumentTypeError(f"expected NAME=N with NAME one of {', '.join(_limit_names())}; "
                                         f"got {text!r}")
    try:
        n = int(value.replace("_", ""))
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {value!r}")
    return name, n


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="blockout",
                     description="Blockout (Murdock et al., CVPR 2016): train networks whose FC layers learn "
                                 "their own block (branch) structure, and inspect the hierarchy they learn.")
    from blockout import __version__

    parser.add_argument("--version", action="version", version=f"blockout {__version__}")
    parser.add_argument("--limit", action="append", default=[], type=_limit, metavar="NAME=N",
                        help="raise a size limit on what is read from files (repeatable; same as its "
                             "BLOCKOUT_MAX_* variable), e.g. --limit max_nodes=50000000; names: "
                             + ", ".join(_limit_names()))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit:
        import os

        from analysis.limits import LIMITS

        for name, n in args.limit:  # the readers look the limits up in the environment
            os.environ[LIMITS[name][0]] = str(n)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # the reader went away (`blockout inspect RUN | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as exc:
        msg = " ".join(str(exc).split("\n"))
        print(f"blockout: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # outside the training loop's own handling (e.g. while loading data)
        print("blockout: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
