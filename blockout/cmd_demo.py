"""``blockout demo``: train the packaged demo recipe into ``checkpoints/demo`` (or reuse it) and show it.

The recipe is ``blockout/configs/demo.json`` (:func:`demo_config`); a finished run is shown as it
is, an unfinished one resumed, and the result printed as ``blockout inspect`` prints it.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.summary_report import format_inspect
from blockout.cmd_inspect import inspect_run
from blockout.config import TrainConfig, read_config_file
from blockout.errors import UserError
from blockout.exitcodes import EXIT_INTERRUPTED


DEMO_NAME = "demo"


def demo_config() -> dict[str, Any]:
    """The packaged demo recipe (``blockout/configs/demo.json``)."""
    ref = resources.files("blockout") / "configs" / "demo.json"
    with resources.as_file(ref) as path:
        return read_config_file(path)


def run_is_complete(run_dir: Path) -> bool:
    """A run whose last evaluation reached its configured epochs (no torch needed)."""
    from analysis.runformat import run_is_complete as complete

    return complete(run_dir)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train the default synthetic demo run and show it",
                       description="Train the demo recipe (blockout/configs/demo.json: the synthetic dataset, "
                                   "our hard-cocluster recipe, docs/emergence.md) into checkpoints/demo, skipping "
                                   "or resuming it when it exists, then print its inspect summary.")
    p.add_argument("--out", default=str(Path("checkpoints") / DEMO_NAME), metavar="DIR",
                   help="run folder (default: checkpoints/demo)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="override the recipe's epochs")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from blockout.train import is_resumable, log, resume_config, train

    out = Path(args.out)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("device", args.device)) if v is not None}
    if out.is_dir() and any(out.iterdir()):
        if run_is_complete(out) and args.epochs is None:
            log(f"demo run {out} is already trained; showing it (delete the folder to retrain)")
        elif is_resumable(out):  # a checkpoint, or stopped before the first one (starts again)
            result = train(resume_config(out, overrides), resume=True)
            if result.status in ("interrupted", "aborted"):
                return EXIT_INTERRUPTED
        else:
            raise UserError(f"{out} exists but is neither a finished run nor resumable; remove it or pass --out")
    else:
        cfg = TrainConfig.from_dict({**demo_config(), **overrides, "out": str(out)}, source="demo.json")
        result = train(cfg)
        if result.status in ("interrupted", "aborted"):
            return EXIT_INTERRUPTED
    print(format_inspect(*inspect_run(out)))
    return 0
