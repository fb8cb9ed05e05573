"""The ``blockout`` command line: ``train``, ``inspect``, ``demo``, ``reproduce`` (and more, added the same way).

Each subcommand is one ``add_<name>(subparsers)`` function that builds its parser and sets
``handler``; register it in :data:`COMMANDS`. A :class:`UserError` anywhere becomes one line
``blockout: error: <message>`` on stderr and exit code 2; an interrupted training exits 130.

``python -m blockout.cli ...`` and the ``blockout`` console script are the same program, and the
same command works under ``torchrun`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from blockout.cmd_compile import add_compile
from blockout.cmd_report import add_report
from blockout.config import ALL_METHODS, METHODS, TrainConfig, read_config_file
from blockout.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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
      "cocluster_at", "cocluster_anneal_epochs", "cocluster_method", "cocluster_k", "cocluster_scale", "cocluster_class_high",
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
# inspect


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="summarise a run folder",
                       description="First the verdict (did branches form: per learned node set its outcome, "
                                   "branches, dead and full nodes), then config, best and final accuracy, and per "
                                   "node set: size, k, mean P, share of P < 0.1 and > 0.9, nodes per cluster and "
                                   "dead nodes at a threshold.")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="membership threshold: node in cluster when P >= T (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="N", help="snapshot step (default: the last)")
    p.add_argument("--permutations", type=int, default=999, metavar="N",
                   help="permutations of the null behind the verdict's second question (memberships vs the "
                        "dataset's references, as blockout compare); 0 skips the comparison (default: 999)")
    p.set_defaults(handler=cmd_inspect)


def inspect_run(run_dir, threshold: float = 0.5, step: int | None = None, permutations: int = 999):
    """``(summary, verdict)`` of a run folder: what ``blockout inspect`` and ``blockout demo`` print.

    The verdict's second question needs the comparison with the dataset's references
    (``permutations`` 0 skips it); a run without usable references still gets its summary.
    """
    from analysis.run import load_run
    from analysis.summary import summarize_run
    from analysis.verdict import run_verdict

    if permutations < 0:
        raise UserError(f"--permutations must be >= 0, got {permutations}")
    summary = summarize_run(run_dir, step=step, threshold=threshold)
    run = load_run(run_dir)
    report = None
    if permutations:
        from analysis.compare import compare_run

        try:
            report = compare_run(run, reference=["all"], threshold=threshold, step=step, permutations=permutations)
        except UserError as exc:
            print(f"blockout: note: no comparison for the verdict: {exc}", file=sys.stderr)
    return summary, run_verdict(run, report, threshold=threshold, step=step)


def format_inspect(summary: dict[str, Any], verdict) -> str:
    """The verdict sentences, a blank line, then the summary table."""
    return "\n".join(verdict.sentences) + "\n\n" + format_summary(summary)


def cmd_inspect(args: argparse.Namespace) -> int:
    summary, verdict = inspect_run(args.run, args.threshold, args.step, args.permutations)
    if args.json:
        print(json.dumps({**summary, "verdict": verdict.to_dict()}, allow_nan=False))
    else:
        print(format_inspect(summary, verdict))
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_summary(s: dict[str, Any]) -> str:
    """The readable table of ``blockout inspect``."""
    cfg = s["config"]
    acc = s["accuracy"]
    prog = s["progress"]
    ds = s["dataset"]
    sizes = (f", {ds['train_size']} train / {ds['test_size']} test"
             if ds.get("train_size") is not None and ds.get("test_size") is not None else "")
    # runs written by RunLogger from a user's own loop may lack any of these: leave out what is unknown
    known = [f"{k}={cfg[k]}" for k in ("clusters", "nodes", "depth") if cfg.get(k) is not None]
    epochs = f"epochs {prog['epochs_done']}/{prog['epochs']}" if prog.get("epochs") is not None else \
        f"epochs {prog['epochs_done']}"
    known += [epochs, f"steps {prog['steps_done']}"]
    known += [f"{k}={cfg[k]}" for k in ("lr", "seed") if cfg.get(k) is not None]
    lines = [f"run {s['run']}  ({s['path']})",
             f"  method {s['method'] or 'not recorded'}, dataset {ds.get('name') or 'not named'} "
             f"({ds['num_classes']} classes{sizes})",
             "  " + " ".join(known).replace("clusters=", "k=")]
    if acc["final"]:
        b, f = acc["best"], acc["final"]
        lines.append(f"  test accuracy: final {_pct(f['test_acc'])} (epoch {f['epoch']}), "
                     f"best {_pct(b['test_acc'])} (epoch {b['epoch']})"
                     + (f"; train accuracy {_pct(f['train_acc'])}" if f.get("train_acc") is not None else ""))
    else:
        lines.append("  no evaluation yet")
    snap = s["snapshot"]
    if not s["node_sets"]:
        lines.append("  no node sets (a plain network: no cluster memberships)")
        return "\n".join(lines)
    lines.append(f"  node sets at step {snap['step'] if snap else '-'}, threshold {s['threshold']}:")
    head = f"    {'node set':<10}{'role':<9}{'size':>6}{'k':>4}{'mean P':>8}{'P<0.1':>8}{'P>0.9':>8}{'dead':>6}  nodes per cluster"
    lines.append(head)
    for ns in s["node_sets"]:
        if "mean" not in ns:
            lines.append(f"    {ns['name']:<10}{ns['role']:<9}{ns['size']:>6}{ns['clusters']:>4}  (no snapshot)")
            continue
        per = ns["nodes_per_cluster"]
        per_s = " ".join(str(c) for c in per[:16]) + (" ..." if len(per) > 16 else "")
        lines.append(f"    {ns['name']:<10}{ns['role']:<9}{ns['size']:>6}{ns['clusters']:>4}{ns['mean']:>8.3f}"
                     f"{ns['frac_below_0.1']:>8.3f}{ns['frac_above_0.9']:>8.3f}{ns['dead_nodes']:>6}  {per_s}")
    live = [f"{l['name']} {l['live_fraction']:.2f}" for l in s["layers"] if l.get("live_fraction") is not None]
    if live:
        lines.append("  live connections: " + ", ".join(live))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# demo


DEMO_NAME = "demo"


def demo_config() -> dict[str, Any]:
    """The packaged demo recipe (``blockout/configs/demo.json``)."""
    ref = resources.files("blockout") / "configs" / "demo.json"
    with resources.as_file(ref) as path:
        return read_config_file(path)


def run_is_complete(run_dir: Path) -> bool:
    """A run whose last evaluation reached its configured epochs (no torch needed)."""
    from analysis import runfolder as rf

    if not rf.is_run_folder(run_dir):
        return False
    run = rf.read_json(run_dir / rf.RUN_JSON, "run.json")
    metrics = rf.read_jsonl(run_dir / rf.METRICS)
    epochs = (run.get("config") or {}).get("epochs")
    return bool(metrics) and epochs is not None and int(metrics[-1].get("epoch", 0)) >= int(epochs)


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


# ------------------------------------------------------------------------------------------
# reproduce


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
    add_config_flags(p, skip=("method", "seed", "out"))
    p.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
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


# ------------------------------------------------------------------------------------------
# compare (analysis.compare; owned by the WordNet/statistics work)


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare a run's class hierarchy with WordNet / coarse classes",
                       description="First the verdict (did branches form; do the memberships group classes like "
                                   "the best-supported reference, side by side with the weights), then the "
                                   "agreement (ARI, NMI, Fowlkes-Mallows) of the network's class groups with "
                                   "WordNet hypernyms at each depth and with the dataset's coarse classes, and "
                                   "Spearman correlation of class distances with a Mantel test; every statistic "
                                   "with a null from the same dendrogram with permuted class labels (z, p).")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--reference", action="append", default=None, metavar="wordnet|coarse|all|FILE.json",
                   help="reference hierarchy: WordNet hypernyms, the dataset's coarse classes, all that the "
                        "run's classes allow (the default), or your own nested {group: [classes]} JSON file "
                        "(the --hierarchy format, any depth: every level is a reference partition, its tree "
                        "distances go to the Mantel test); repeat to combine, e.g. --reference all "
                        "--reference mine.json")
    p.add_argument("--synsets", default=None, metavar="FILE.json",
                   help='WordNet synsets for some classes, overriding wnids, the curated table and guesses: '
                        '{"class name": "synset.n.01" or "n01234567"}. Class names that are WordNet nouns '
                        "otherwise take their most frequent sense, listed in the notes as guesses")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="membership threshold for connectivity distances (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S", help="snapshot step (default: the last)")
    p.add_argument("--source", choices=("memberships", "weights", "both"), default="both",
                   help="membership hierarchy, weight-induced hierarchy, or both (default)")
    p.add_argument("--method", choices=("probability", "connectivity"), default="probability",
                   help="membership distances (default: probability)")
    p.add_argument("--permutations", type=int, default=999, metavar="N", help="null permutations (default: 999)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the permutations (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in docs/compare.md)")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare_run, format_report
    from analysis.run import load_run
    from analysis.verdict import run_verdict

    run = load_run(args.run)
    report = compare_run(run, reference=args.reference or ["all"], threshold=args.threshold,
                         step=args.step, source=args.source, method=args.method,
                         permutations=args.permutations, seed=args.seed, synsets=args.synsets)
    verdict = run_verdict(run, report, threshold=args.threshold, step=args.step)
    if args.json:
        print(json.dumps({**report.to_dict(), "verdict": verdict.to_dict()}, allow_nan=False,
                         ensure_ascii=False))
    else:
        print("\n".join(verdict.sentences))
        print()
        print(format_report(report))
    return 0


# ------------------------------------------------------------------------------------------
# export (analysis.export)


def add_export(sub) -> None:
    from analysis.export import FORMATS, WHATS

    p = sub.add_parser("export", help="export the branch tree, layer graph or class dendrogram",
                       description="Write the branch tree (tree), the layer graph (layers) or the class "
                                   "dendrogram (dendrogram) as GraphML, GEXF, node-link JSON, Graphviz DOT, "
                                   "Newick (trees only) or a standalone interactive HTML page.")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--format", choices=FORMATS, required=True, help="output format")
    p.add_argument("--what", choices=WHATS, default="tree", help="what to export (default: tree)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T", help="membership threshold (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S", help="snapshot step (default: the last)")
    p.add_argument("--method", choices=("probability", "connectivity", "weights"), default="probability",
                   help="class distances of the dendrogram (default: probability)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="output file (default: <run>_<what>.<ext> in the current folder)")
    p.add_argument("--synsets", default=None, metavar="FILE.json",
                   help='WordNet synsets for some classes, for the branch tree\'s WordNet labels: '
                        '{"class name": "synset.n.01" or "n01234567"} (as blockout compare --synsets)')
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from analysis.export import EXTENSIONS, export_run
    from analysis.run import load_run
    from analysis.runfolder import safe_name

    run = load_run(args.run)
    label_fn = None
    if args.synsets:
        from analysis.wordnet.references import class_lch_labeler
        from analysis.wordnet.resolve import load_synset_map

        label_fn = class_lch_labeler(run.class_names, run.wnids,
                                     overrides=load_synset_map(args.synsets, run.class_names))
    # the default name comes from run.json, which may be hostile: a plain name in the working folder
    output = args.output or Path.cwd() / f"{safe_name(run.name)}_{args.what}.{EXTENSIONS[args.format]}"
    path = export_run(run, what=args.what, fmt=args.format, path=output,
                      tau=args.threshold, step=args.step, method=args.method, label_fn=label_fn)
    print(path)
    return 0


# ------------------------------------------------------------------------------------------
# dashboard (app/: Streamlit)


def add_dashboard(sub) -> None:
    p = sub.add_parser("dashboard", help="open the Streamlit dashboard on a run",
                       description="Start the dashboard (app/Home.py, headless) on RUN (default: checkpoints/demo, "
                                   "else the first run under checkpoints/) and print its URL once the server "
                                   "answers. Ctrl-C (or SIGTERM / SIGHUP) stops it, server included.")
    p.add_argument("run", metavar="RUN", nargs="?", default=None, help="run folder to open first")
    p.add_argument("--port", type=int, default=None, metavar="N",
                   help="port to listen on (default: 8501, or a free port when 8501 is taken)")
    p.add_argument("--address", default="127.0.0.1", metavar="A",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 to serve the network)")
    p.add_argument("--startup-timeout", type=float, default=180.0, metavar="S",
                   help="seconds to wait for the server to answer (default: 180)")
    p.set_defaults(handler=cmd_dashboard)


def _port_free(address: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


#: Signals that stop ``blockout dashboard`` and, with it, its server child.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


class _Stop(Exception):
    """Raised in the main thread by a stop signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def server_answers(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` (the health endpoint) answers 200 ``ok``; never through a proxy."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_child(proc, grace: float = 10.0) -> None:
    """SIGTERM the server, then SIGKILL it if it has not exited after ``grace`` seconds."""
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dashboard_command(port: int, address: str, run: str | None) -> list[str]:
    """The server child's command line: ``python -m app.serve`` watching this process."""
    import os

    # --parent-pid: the server also stops if we die without running our handlers (SIGKILL)
    cmd = [sys.executable, "-m", "app.serve", "--port", str(port), "--address", address,
           "--parent-pid", str(os.getpid())]
    if run is not None:
        cmd.append(str(Path(run).resolve()))
    return cmd


def cmd_dashboard(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    import time

    if args.run is not None:
        from analysis.run import read_run_meta

        read_run_meta(args.run)  # the same validated check every reader makes, before the server starts
    port = args.port
    if port is None:
        port = 8501
        if not _port_free(args.address, port):
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((args.address, 0))
                port = int(s.getsockname()[1])
    elif not 0 < port < 65536 or not _port_free(args.address, port):
        raise UserError(f"port {port} is not free on {args.address}; pick another with --port")
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    url = f"http://{host}:{port}"
    repo = Path(__file__).resolve().parents[1]
    cmd = dashboard_command(port, args.address, args.run)

    def on_signal(signum, frame):
        raise _Stop(signum)

    # Handlers before the child exists, so no signal can slip between its start and their install.
    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, on_signal)
    proc = None
    try:
        print(f"starting the dashboard server on {url} ...", file=sys.stderr, flush=True)
        proc = subprocess.Popen(cmd, cwd=repo)
        deadline = time.monotonic() + float(args.startup_timeout)
        while not server_answers(url + "/_stcore/health"):
            if proc.poll() is not None:
                raise UserError(f"the dashboard server exited with code {proc.returncode} before answering on {url}")
            if time.monotonic() > deadline:
                raise UserError(f"the dashboard server did not answer on {url} within {args.startup_timeout:g} s")
            time.sleep(0.2)
        print(f"Blockout dashboard: {url}  (Ctrl-C to stop)", flush=True)
        return int(proc.wait())
    except _Stop as stop:
        # Ctrl-C is the normal way to stop it; other signals report themselves (128 + signal)
        return 0 if stop.signum == signal.SIGINT else 128 + int(stop.signum)
    finally:
        # every way out (signal, error, normal exit) takes the server down with us
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_child(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------
# entry point

#: Subcommands: each adds its parser and sets ``handler``. Append new ones here.
COMMANDS: list[Callable] = [add_train, add_inspect, add_demo, add_reproduce, add_compare, add_export,
                            add_dashboard, add_report, add_compile]


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
