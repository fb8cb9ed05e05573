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
from blockout.config import TrainConfig, read_config_file
from blockout.errors import UserError
from blockout.exitcodes import EXIT_INTERRUPTED, EXIT_USER_ERROR


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``blockout train: error: ...``) and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------
# training flags, generated from TrainConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: ``--help`` sections of the training flags, in order: (title, description, TrainConfig fields).
#: Every field must be in exactly one (tests/test_cli_help.py checks it); a new field missing here
#: still gets its flag, in a last "other options" section, and names of fields this build does not
#: have are skipped.
FLAG_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("data", "what to train on", ("dataset", "data_dir", "hierarchy", "samples_per_class",
                                  "test_samples_per_class", "image_size", "augment", "data_seed")),
    ("model", "the network around the Blockout layers", ("nodes", "depth", "trunk")),
    ("the paper's method", "Blockout as in Murdock et al. (CVPR 2016): the six methods and their options",
     ("method", "clusters", "mask", "mask_scale", "trunk_clusters", "dropout")),
    ("optimisation", None, ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "theta_lr_mult",
                            "lr_schedule", "warmup_steps")),
    ("run", "seeds, device and output", ("seed", "device", "amp", "out", "snapshot_every", "num_workers")),
    ("our emergence options", "ours, not the paper's (docs/emergence.md); the recipes --method hard-cocluster and "
                              "hard-budgeted fill in every one you do not give",
     ("hidden_membership", "class_membership", "membership_m", "membership_init_scale", "membership_init_noise",
      "class_init_noise", "temperature", "temperature_end", "usage_weight", "class_usage_weight", "theta_init_low",
      "theta_init_high", "fanin_init", "membership_warmup", "soft_epochs", "budget_rho", "budget_layers",
      "budget_scope", "budget_step", "budget_max_step", "budget_anneal_start", "budget_anneal_end", "freeze_after",
      "cocluster_at", "cocluster_anneal_epochs", "cocluster_method", "cocluster_scale", "cocluster_class_high",
      "cocluster_class_low", "cocluster_rescale", "rescue_dead")),
)


def flag_help(text: str, default: Any) -> str:
    """Help text with its default said once: kept as is when the text already names its default.

    >>> flag_help("training epochs", 10)
    'training epochs (default: 10)'
    >>> flag_help("steps between snapshots (default: about 30 per run)", None)
    'steps between snapshots (default: about 30 per run)'
    >>> flag_help("folder of the files", None)
    'folder of the files (default: not set)'
    """
    if "default" in text.lower():
        return text
    return f"{text} (default: {'not set' if default is None else default})"


def add_config_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per :class:`TrainConfig` field, in the ``--help`` sections of :data:`FLAG_GROUPS`;
    absent flags stay absent (explicit flags win over --config)."""
    import dataclasses

    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in skip}
    placed = {name for _, _, names in FLAG_GROUPS for name in names}
    sections = [*FLAG_GROUPS, ("other options", None, tuple(n for n in fields if n not in placed))]
    for title, description, names in sections:
        names = [n for n in names if n in fields]
        if not names:
            continue
        group = parser.add_argument_group(title, description)
        for name in names:
            f = fields[name]
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            base = args[0] if args else hint
            kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            if base is int:
                kw["type"], kw["metavar"] = int, "N"
            elif base is float:
                kw["type"], kw["metavar"] = float, "X"
            else:
                kw["metavar"] = f.metadata.get("metavar", "VALUE")
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
                kw.pop("metavar", None)
            kw["help"] = flag_help(f.metadata.get("help", ""), getattr(defaults, f.name))
            group.add_argument(_flag(f.name), **kw)


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    names = set(TrainConfig.field_names())
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``--config FILE`` (if any) overlaid with the explicit flags."""
    overrides = _explicit(args)
    if getattr(args, "config", None):
        return TrainConfig.from_json_file(args.config, overrides)
    return TrainConfig.from_dict(overrides, source="command line")


# ------------------------------------------------------------------------------------------
# train


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a network into a run folder",
                       description="Train one of the paper's methods and write a run folder "
                                   "(run.json, metrics.jsonl, snapshots/, train_state.pt). Works under "
                                   "torchrun for many processes/GPUs.")
    p.add_argument("--config", metavar="FILE", help="JSON file with any of the options below; flags win")
    p.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN (only --epochs, --device, "
                                                   "--num-workers, --amp may change)")
    p.add_argument("--resume-if-exists", action="store_true",
                   help="continue the run in --out when it exists (same options required), else start it; "
                        "what a job restarted by torchrun --max-restarts or a scheduler should pass")
    add_config_flags(p)
    p.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from blockout.train import is_resumable, resume_config, train

    if args.resume:
        if args.config:
            raise UserError("--config cannot be combined with --resume (the run keeps its own config)")
        config = resume_config(args.resume, _explicit(args))
        result = train(config, resume=True)
    elif args.resume_if_exists and is_resumable(_train_out(args)):
        given = {**(read_config_file(args.config) if args.config else {}), **_explicit(args)}
        result = train(resume_config(_train_out(args), {k: v for k, v in given.items() if v is not None}),
                       resume=True)
    else:
        result = train(config_from_args(args))
    return EXIT_INTERRUPTED if result.status in ("interrupted", "aborted") else 0


def _train_out(args: argparse.Namespace) -> Path:
    from blockout.train import default_out

    config = config_from_args(args)
    return Path(config.out) if config.out else default_out(config)


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
    parser = _Parser(prog="blockout",
                     description="Blockout (Murdock et al., CVPR 2016): train networks whose FC layers learn "
                                 "their own block (branch) structure, and inspect the hierarchy they learn.")
    from blockout import __version__

    parser.add_argument("--version", action="version", version=f"blockout {__version__}")
    parser.add_argument("--limit", action="append", default=[], type=_limit, metavar="NAME=N",
                        help="raise a size limit on what is read from files (repeatable; same as its "
                             "BLOCKOUT_MAX_* variable), e.g. --limit max_nodes=50000000; names: "
                             + ", ".join(_limit_names()))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
