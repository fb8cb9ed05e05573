"""``blockout reproduce``: train the paper's tables (methods, clusters, nodes) over seeds with intervals.

The parser and its argument types live here; the training, the table and its files are
:mod:`blockout.reproduce`. Every training flag of ``blockout train`` passes through to every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blockout.config import ALL_METHODS, METHODS, TrainConfig, read_config_file
from blockout.errors import UserError
from blockout.exitcodes import EXIT_INTERRUPTED


def _seed_list(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,4,7`` -> those seeds."""
    try:
        if "," in text:
            seeds = [int(t) for t in text.split(",") if t.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (3) or a list (0,1,2), got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct, got {text!r}")
    return seeds


def _method_list(text: str) -> list[str]:
    from blockout.reproduce import OURS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    allowed = list(METHODS) + list(OURS)
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad) or text!r}; choose from "
                                         f"{', '.join(allowed)}")
    return methods


def _int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers (2,4,6), got {text!r}") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, got {text!r}")
    return values


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="train the paper's tables (methods, clusters, nodes) with confidence intervals",
                       description="Train every row of a preset for every seed (finished runs are reused, "
                                   "unfinished ones resumed; every run folder is kept under --out) and write "
                                   "<preset>.md, <preset>.json and <preset>.svg into --out: test accuracy mean ± std "
                                   "(best and final epoch), the paired difference hard-learned - dropout with its 95% "
                                   "paired t interval, the first epoch reaching dropout's best accuracy, the outcome "
                                   "of each learned node set and the ARI of the membership and weight-induced "
                                   "hierarchies with the coarse and WordNet references. Presets: methods = the "
                                   "paper's six methods plus our hard-cocluster (in its own block); clusters = "
                                   "hard-learned with k = 2, 4, 6; nodes = hard-learned with 512, 1024, 2048 nodes "
                                   "per FC layer. Every training flag below passes through to every run.")
    p.add_argument("--preset", choices=("methods", "clusters", "nodes"), default="methods",
                   help="which table (default: methods)")
    p.add_argument("--config", metavar="FILE", help="JSON file with shared training options; flags win")
    p.add_argument("--seeds", type=_seed_list, default=[0, 1, 2], metavar="N|LIST",
                   help="number of seeds (3 = 0,1,2) or a comma list (default: 3)")
    p.add_argument("--methods", type=_method_list, default=None, metavar="LIST",
                   help="methods preset: comma list of rows (default: baseline,fc,dropout,soft-learned,"
                        "hard-fixed,hard-learned,hard-cocluster)")
    p.add_argument("--values", type=_int_list, default=None, metavar="LIST",
                   help="clusters/nodes presets: the values of the sweep (default: 2,4,6 / 512,1024,2048)")
    p.add_argument("--method", default="hard-learned", choices=ALL_METHODS,
                   help="clusters/nodes presets: the method swept (default: hard-learned)")
    p.add_argument("--permutations", type=int, default=999, metavar="N",
                   help="label permutations of each ARI's p-value (default: 999)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for the runs and the table "
                                                              "(default: checkpoints/reproduce-<dataset>-<preset>)")
    # the training flags are `blockout train`'s; imported when the parser is built (blockout.cli
    # imports this module, so a module-level import would be circular)
    from blockout.cmd_train import add_config_flags

    add_config_flags(p, skip=("method", "seed", "out"))
    p.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from blockout.cmd_train import explicit_options as _explicit  # the flags given explicitly, as `blockout train` reads them
    from blockout.reproduce import preset_rows, reproduce, to_markdown

    options = _explicit(args)
    if args.config:
        options = {**read_config_file(args.config), **options}
    options.pop("method", None)
    options.pop("seed", None)
    options.pop("out", None)
    if args.permutations < 0:
        raise UserError(f"--permutations must be 0 or more, got {args.permutations}")
    if args.preset != "methods" and args.methods:
        raise UserError("--methods applies to --preset methods; use --values (and --method) for the sweeps")
    if args.preset == "methods" and args.values:
        raise UserError("--values applies to --preset clusters or nodes")
    rows = preset_rows(args.preset, args.values, args.methods, args.method)
    dataset = TrainConfig.from_dict(options, source="command line").dataset
    root = Path(args.out) if args.out else Path("checkpoints") / f"reproduce-{dataset}-{args.preset}"
    table = reproduce(options, root, rows, args.seeds, preset=args.preset, permutations=args.permutations)
    if table is None:
        return EXIT_INTERRUPTED
    print(to_markdown(table, f"Blockout {args.preset} table on {dataset}"))
    print(f"(written to {root / (args.preset + '.md')}, .json and .svg beside it)", file=sys.stderr)
    return 0
