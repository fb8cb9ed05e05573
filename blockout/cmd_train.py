"""``blockout train``: its parser, its handler, and the training flags generated from
:class:`~blockout.config.TrainConfig` (also used by ``blockout reproduce``).

One flag per option of the config's sections (``--samples-per-class`` for
``data.samples_per_class``), in the ``--help`` sections of :data:`FLAG_GROUPS`; absent flags stay
absent, so explicit flags win over ``--config FILE`` (a flat or nested JSON config).
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, Sequence

from blockout.config import TrainConfig, flat_config, read_config_file
from blockout.errors import UserError

#: exit status of an interrupted or aborted training (as ``blockout.cli``)
EXIT_INTERRUPTED = 130



def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: ``--help`` sections of the training flags, in order: (title, description, option names).
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
      "cocluster_at", "cocluster_anneal_epochs", "cocluster_method", "cocluster_coarse", "cocluster_k",
      "cocluster_source", "cocluster_scale", "cocluster_class_high", "cocluster_class_low", "cocluster_rescale", "rescue_dead")),
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
    defaults = TrainConfig()
    options = TrainConfig.option_fields()
    hints = {f.name: hint for f, hint in options}
    fields = {f.name: f for f, _ in options if f.name not in skip}
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


def explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given as flags (absent flags are absent, so a config file's values stay)."""
    names = set(TrainConfig.field_names())
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``--config FILE`` (if any) overlaid with the explicit flags."""
    overrides = explicit_options(args)
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
        config = resume_config(args.resume, explicit_options(args))
        result = train(config, resume=True)
    elif args.resume_if_exists and is_resumable(_train_out(args)):
        given = {**(flat_config(read_config_file(args.config), args.config) if args.config else {}),
                 **explicit_options(args)}
        result = train(resume_config(_train_out(args), {k: v for k, v in given.items() if v is not None}),
                       resume=True)
    else:
        result = train(config_from_args(args))
    return EXIT_INTERRUPTED if result.status in ("interrupted", "aborted") else 0


def _train_out(args: argparse.Namespace) -> Path:
    from blockout.train import default_out

    config = config_from_args(args)
    return Path(config.out) if config.out else default_out(config)
