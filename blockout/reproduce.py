"""``blockout reproduce``: the paper's three tables (methods, clusters, nodes), regenerated on any dataset.

Every row of a preset is trained for every seed into ``<root>/<row>-s<seed>`` (a finished run is
reused, an unfinished one resumed, and a finished run with exactly the same options in a sibling
``reproduce-*`` folder is copied instead of retrained). Then the table is computed from the run
folders alone:

* best and final test accuracy per row, mean ± sample standard deviation over seeds;
* the **paired difference hard-learned − dropout** over the seeds both rows share, with a
  two-sided 95 % paired *t* interval (:func:`paired_t_interval`);
* "faster training": per row and seed, the first epoch whose test accuracy reaches the dropout
  row's best (mean over its seeds), or never;
* emergence per row: the outcome of each learned node set (:func:`analysis.dynamics.classify_outcome`)
  and the adjusted Rand index (with its permutation p) of the membership hierarchy and of the
  weight-induced hierarchy against every reference the dataset allows (coarse classes, WordNet).

The paper's CIFAR-100 / ImageNet numbers are printed in their own columns, labelled as the paper's.
Outputs: ``<preset>.md``, ``<preset>.json`` and ``<preset>.svg`` (accuracy per row with error bars).
"""

from __future__ import annotations

import html
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from analysis import runfolder as rf
from analysis.runformat import flat_config, is_run_folder, read_metrics, read_run
from blockout.config import METHODS, TrainConfig
from blockout.errors import UserError

#: Top-1 % on CIFAR-100 (512-node FC layers, 6 clusters), Murdock et al. 2016, Table 1.
PAPER_CIFAR100 = {
    "baseline": 61.56, "fc": 62.66, "dropout": 64.32,
    "soft-learned": 63.57, "hard-fixed": 65.62, "hard-learned": 65.66,
}
#: The same methods on ImageNet (top-1 %), for reference.
PAPER_IMAGENET = {
    "baseline": 73.43, "fc": 68.06, "dropout": 73.88,
    "soft-learned": 72.43, "hard-fixed": 74.44, "hard-learned": 74.83,
}

PRESETS = ("methods", "clusters", "nodes")
#: Default ``--values`` of the sweeps (the paper's).
PRESET_VALUES = {"clusters": [2, 4, 6], "nodes": [512, 1024, 2048]}
#: Our recipe, reported in its own block below the paper's six methods.
OURS = ("hard-cocluster",)
#: Methods whose accuracies form the paired difference.
PAIR = ("hard-learned", "dropout")


@dataclass
class Row:
    """One row of a table: a name, the options it sets, and whether it is the paper's or ours."""

    name: str
    options: dict = field(default_factory=dict)
    block: str = "paper"


def preset_rows(preset: str, values: Sequence[int] | None = None, methods: Sequence[str] | None = None,
                method: str = "hard-learned") -> list[Row]:
    """The rows of a preset.

    >>> [r.name for r in preset_rows("methods")][-2:], preset_rows("methods")[-1].block
    (['hard-learned', 'hard-cocluster'], 'ours')
    >>> [(r.name, r.options) for r in preset_rows("clusters", [2, 4])]
    [('k2', {'method': 'hard-learned', 'clusters': 2}), ('k4', {'method': 'hard-learned', 'clusters': 4})]
    """
    if preset == "methods":
        chosen = list(methods) if methods else list(METHODS) + list(OURS)
        return [Row(m, {"method": m}, "ours" if m in OURS else "paper") for m in chosen]
    if preset in ("clusters", "nodes"):
        vals = list(values) if values else PRESET_VALUES[preset]
        if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
            raise UserError(f"--values must be positive integers, got {vals!r}")
        if len(set(vals)) != len(vals):
            raise UserError(f"--values must be distinct, got {vals!r}")
        prefix, key = ("k", "clusters") if preset == "clusters" else ("n", "nodes")
        return [Row(f"{prefix}{v}", {"method": method, key: int(v)}) for v in vals]
    raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def run_name(row: str, seed: int) -> str:
    """Folder name of one run of the table.

    >>> run_name("hard-learned", 2)
    'hard-learned-s2'
    """
    return f"{row}-s{seed}"


# ------------------------------------------------------------------------------------------
# statistics (pure)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value, None for none).

    >>> m, s = mean_std([0.5, 0.7])
    >>> round(m, 6), round(s, 6), mean_std([0.3]), mean_std([])
    (0.6, 0.141421, (0.3, 0.0), (None, None))
    """
    vals = [float(v) for v in values]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def paired_t_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of the paired differences ``a - b`` with its two-sided paired *t* confidence interval.

    The interval is ``mean ± t_{n-1, (1+level)/2} · sd / sqrt(n)`` over the ``n`` pairs (same
    seed in both rows); it needs ``n >= 2`` (otherwise ``low``/``high`` are None).

    Examples
    --------
    >>> r = paired_t_interval([0.80, 0.82, 0.81], [0.78, 0.79, 0.80])
    >>> round(r["mean"], 4), round(r["low"], 4), round(r["high"], 4), r["n"]
    (0.02, -0.0048, 0.0448, 3)
    >>> paired_t_interval([0.5], [0.4])["low"] is None
    True
    """
    from scipy.stats import t as student_t

    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "level": level, "interval": "paired t (two-sided)",
                           "mean": None, "sd": None, "low": None, "high": None}
    if n == 0:
        return out
    out["mean"] = float(x.mean())
    if n < 2:
        return out
    sd = float(x.std(ddof=1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    out.update(sd=sd, low=out["mean"] - half, high=out["mean"] + half)
    return out


def first_epoch_reaching(test_accs: Sequence[float], target: float) -> int | None:
    """1-based epoch at which the accuracy first reaches ``target``, or None.

    >>> first_epoch_reaching([0.5, 0.7, 0.8], 0.7), first_epoch_reaching([0.5], 0.9)
    (2, None)
    """
    for i, acc in enumerate(test_accs):
        if acc >= target:
            return i + 1
    return None


def pick_wordnet_grouping(partitions: Sequence[Mapping], n_classes: int, target: float) -> str | None:
    """The WordNet depth grouping a table summarises, chosen before looking at any score.

    Among the WordNet groupings with more than one and fewer than ``n_classes`` groups, the one
    whose number of groups is closest to ``target`` (the table uses the coarse reference's number
    of groups, or ``sqrt(n_classes)``, for a coarse cut and ``n_classes / 2`` for a fine one);
    ties go to the shallower one.

    >>> parts = [{"reference": "wordnet@2", "kind": "wordnet", "depth": 2, "n_groups": 2},
    ...          {"reference": "wordnet@4", "kind": "wordnet", "depth": 4, "n_groups": 4}]
    >>> pick_wordnet_grouping(parts, 10, 3), pick_wordnet_grouping(parts, 10, 5)
    ('wordnet@2', 'wordnet@4')
    """
    cands = [p for p in partitions if p.get("kind") == "wordnet" and 1 < p["n_groups"] < n_classes]
    if not cands:
        return None
    best = min(cands, key=lambda p: (abs(p["n_groups"] - target), p.get("depth") or 0))
    return best["reference"]


# ------------------------------------------------------------------------------------------
# reading the runs


def _finished(run_dir: Path, epochs: int) -> list[dict] | None:
    """The metrics of a run that trained all ``epochs``, else None."""
    metrics = read_metrics(run_dir)
    if metrics and int(metrics[-1].get("epoch", 0)) >= epochs:
        return metrics
    return None


def analyse_run(run_dir: Path, permutations: int = 999) -> dict[str, Any]:
    """Emergence outcomes of the learned node sets and the ARI of both hierarchies per reference."""
    from analysis.compare import compare_run
    from analysis.dynamics import classify_outcome
    from analysis.errors import UserError as AnalysisError
    from analysis.run import load_run

    run = load_run(run_dir)
    outcomes = {}
    for ns in run.node_sets:
        if ns.trainable:
            outcomes[ns.name] = classify_outcome(run.probs_history(ns.name), trainable=True).outcome
    agreement: dict[str, Any] = {"partitions": {}, "notes": []}
    try:
        report = compare_run(run, reference="all", permutations=permutations, seed=0)
    except AnalysisError as exc:
        agreement["notes"].append(str(exc))
        return {"outcomes": outcomes, "agreement": agreement}
    agreement["notes"] = list(report.notes)
    agreement["references"] = report.references
    agreement["n_classes"] = report.n_classes
    for h in report.hierarchies:
        for part in h.partitions:
            ari = part.scores["ari"]
            agreement["partitions"].setdefault(part.reference, {})[h.source] = {"ari": ari.observed, "p": ari.p}
    return {"outcomes": outcomes, "agreement": agreement}


def collect(root: Path, rows: Sequence[Row], seeds: Sequence[int], epochs: int | None = None,
            analyse: bool = True, permutations: int = 999) -> dict[str, Any]:
    """Read every run of the table into its JSON form (see the module docstring)."""
    root = Path(root)
    out_rows = []
    for row in rows:
        r: dict[str, Any] = {"method": row.name, "block": row.block, "options": row.options, "runs": [],
                             "seeds": [], "final_test_acc": [], "best_test_acc": [], "curves": [],
                             "seconds": [], "emergence": []}
        for seed in seeds:
            run_dir = root / run_name(row.name, seed)
            metrics = read_metrics(run_dir)
            if not metrics or (epochs is not None and int(metrics[-1].get("epoch", 0)) < epochs):
                continue
            accs = [float(m["test_acc"]) for m in metrics]
            r["runs"].append(run_name(row.name, seed))
            r["seeds"].append(int(seed))
            r["final_test_acc"].append(accs[-1])
            r["best_test_acc"].append(max(accs))
            r["curves"].append(accs)
            r["seconds"].append(float(metrics[-1].get("seconds", 0.0)))
            r["emergence"].append(analyse_run(run_dir, permutations) if analyse else None)
        r["mean"], r["std"] = mean_std(r["final_test_acc"])
        r["best_mean"], r["best_std"] = mean_std(r["best_test_acc"])
        method = row.options.get("method", row.name)
        paper_row = row.name in PAPER_CIFAR100
        r["paper_cifar100"] = PAPER_CIFAR100.get(row.name) if paper_row else None
        r["paper_imagenet"] = PAPER_IMAGENET.get(row.name) if paper_row else None
        r["method_of_row"] = method
        out_rows.append(r)
    table: dict[str, Any] = {"seeds": list(seeds), "rows": out_rows}
    by_name = {r["method"]: r for r in out_rows}
    # paired difference hard-learned - dropout over the seeds both have
    a, b = (by_name.get(n) for n in PAIR)
    if a is not None and b is not None:
        common = sorted(set(a["seeds"]) & set(b["seeds"]))
        pick = lambda r, key: [r[key][r["seeds"].index(s)] for s in common]  # noqa: E731
        table["paired"] = {"a": PAIR[0], "b": PAIR[1], "seeds": common,
                           "final": paired_t_interval(pick(a, "final_test_acc"), pick(b, "final_test_acc")),
                           "best": paired_t_interval(pick(a, "best_test_acc"), pick(b, "best_test_acc"))}
    # faster training: first epoch reaching the dropout row's best (mean over its seeds)
    drop = by_name.get("dropout")
    if drop is not None and drop["best_mean"] is not None:
        target = drop["best_mean"]
        table["target"] = {"row": "dropout", "best_mean": target}
        for r in out_rows:
            r["epochs_to_target"] = [first_epoch_reaching(c, target) for c in r["curves"]]
    _summarise_agreement(table)
    return table


def _summarise_agreement(table: dict[str, Any]) -> None:
    """Per row: mean ARI (and the p of each seed) of both hierarchies against coarse and one WordNet cut."""
    for r in table["rows"]:
        summary: dict[str, Any] = {}
        ems = [e for e in r["emergence"] if e]
        if not ems:
            r["agreement_summary"] = summary
            continue
        refs = ems[0]["agreement"].get("references") or []
        coarse = next((x for x in refs if x["kind"] == "coarse"), None)
        parts = [{"reference": x["name"], "kind": x["kind"], "depth": x["depth"], "n_groups": x["n_groups"]}
                 for x in refs]
        if parts:
            classes = int(ems[0]["agreement"].get("n_classes") or 0)
            wn = pick_wordnet_grouping(parts, classes, coarse["n_groups"] if coarse else math.sqrt(classes))
            wn_fine = pick_wordnet_grouping(parts, classes, classes / 2)
            chosen = {"coarse": coarse["name"] if coarse else None, "wordnet": wn,
                      "wordnet_fine": wn_fine if wn_fine != wn else None}
            for label, ref in chosen.items():
                if ref is None:
                    continue
                for source in ("memberships", "weights"):
                    vals = [e["agreement"]["partitions"].get(ref, {}).get(source) for e in ems]
                    vals = [v for v in vals if v and v["ari"] is not None]
                    if vals:
                        summary.setdefault(label, {"reference": ref})[source] = {
                            "ari_mean": float(np.mean([v["ari"] for v in vals])),
                            "p": [v["p"] for v in vals]}
        outcomes: dict[str, dict[str, int]] = {}
        for e in ems:
            for ns, oc in e["outcomes"].items():
                outcomes.setdefault(ns, {})
                outcomes[ns][oc] = outcomes[ns].get(oc, 0) + 1
        summary["outcomes"] = outcomes
        r["agreement_summary"] = summary


# ------------------------------------------------------------------------------------------
# formatting


def _pct(m, s) -> str:
    return "n/a" if m is None else f"{100 * m:.2f} ± {100 * s:.2f}"


def _ari_cell(d: Mapping | None) -> str:
    if not d:
        return "–"
    if all(p is None for p in d["p"]):  # --permutations 0: no null, no p
        return f"{d['ari_mean']:.2f}"
    ps = "/".join("n/a" if p is None else f"{p:.2f}" for p in d["p"])
    return f"{d['ari_mean']:.2f} (p {ps})"


def to_markdown(table: dict[str, Any], title: str = "") -> str:
    """The table as Markdown (accuracies in %)."""
    seeds = table["seeds"]
    has_target = "target" in table
    has_paper = any(r.get("paper_cifar100") is not None for r in table["rows"])
    intro = f"Test accuracy (%), mean ± sample std over seeds {seeds}: at the last epoch (final) and at the best epoch."
    if has_target:
        intro += (" *Epochs to dropout's best*: per seed, the first epoch whose test accuracy reaches the dropout "
                  "row's best (mean over its seeds); '–' = never.")
    if has_paper:
        intro += (" The paper's columns are the paper's own CIFAR-100 / ImageNet top-1 numbers (Murdock et al. "
                  "2016, Table 1), not ours.")
    lines = [f"# {title}" if title else "# Methods table", "", intro, ""]
    head = "| row | test acc (final) | test acc (best epoch) | runs |"
    sep = "|---|---|---|---|"
    if has_target:
        head += " epochs to dropout's best |"
        sep += "---|"
    if has_paper:
        head += " paper CIFAR-100 (theirs) | paper ImageNet (theirs) |"
        sep += "---|---|"
    blocks = [("paper", None), ("ours", "**Ours (not in the paper):**")]
    for block, label in blocks:
        rows = [r for r in table["rows"] if r.get("block", "paper") == block]
        if not rows:
            continue
        if label:
            lines += ["", label, ""]
        lines += [head, sep]
        for r in rows:
            cell = f"| {r['method']} | {_pct(r['mean'], r['std'])} | {_pct(r['best_mean'], r['best_std'])} | " \
                   f"{len(r['runs'])} |"
            if has_target:
                eps = r.get("epochs_to_target") or []
                cell += " " + (", ".join("–" if e is None else str(e) for e in eps) or "n/a") + " |"
            if has_paper:
                pc, pi = r.get("paper_cifar100"), r.get("paper_imagenet")
                cell += f" {'' if pc is None else f'{pc:.2f}'} | {'' if pi is None else f'{pi:.2f}'} |"
            lines.append(cell)
    paired = table.get("paired")
    if paired:
        lines += [""]
        for key in ("final", "best"):
            d = paired[key]
            if d["mean"] is None:
                continue
            ci = ("n/a (needs 2+ seeds)" if d["low"] is None else
                  f"[{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]")
            verdict = ""
            if d["low"] is not None:
                verdict = (" — hard-learned better" if d["low"] > 0 else " — dropout better" if d["high"] < 0
                           else " — no significant difference (the interval contains 0)")
            lines.append(f"**{paired['a']} − {paired['b']}** ({key} accuracy, paired over seeds {paired['seeds']}): "
                         f"{100 * d['mean']:+.2f} points, 95 % CI {ci} (two-sided paired t interval, "
                         f"n = {d['n']}){verdict}.")
    if any(r.get("agreement_summary") for r in table["rows"]):
        lines += ["", "Emergence: outcome of each learned node set over the seeds, and the adjusted Rand index of "
                  "the class hierarchy from the memberships (P) and of the one induced from the classifier weights "
                  f"with each reference (mean over seeds; permutation p of each seed, {table.get('permutations', 999)} "
                  "label permutations).", ""]
        refs = {}
        for r in table["rows"]:
            for label in ("coarse", "wordnet", "wordnet_fine"):
                ref = (r.get("agreement_summary") or {}).get(label, {}).get("reference")
                if ref:
                    refs.setdefault(label, ref)
        head = "| row | node-set outcomes |"
        sep = "|---|---|"
        for label, ref in refs.items():
            head += f" ARI {ref}: memberships | ARI {ref}: weights |"
            sep += "---|---|"
        lines += [head, sep]
        for r in table["rows"]:
            s = r.get("agreement_summary") or {}
            oc = "; ".join(f"{ns}: " + ", ".join(f"{k}×{v}" for k, v in d.items())
                           for ns, d in (s.get("outcomes") or {}).items()) or "none learned"
            cell = f"| {r['method']} | {oc} |"
            for label in refs:
                d = s.get(label, {})
                cell += f" {_ari_cell(d.get('memberships'))} | {_ari_cell(d.get('weights'))} |"
            lines.append(cell)
    return "\n".join(lines) + "\n"


def to_svg(table: dict[str, Any], title: str = "") -> str:
    """Accuracy per row (final, mean ± std over seeds) as a self-contained SVG bar chart."""
    rows = [r for r in table["rows"] if r["mean"] is not None]
    width, bar, gap, left, top, height = 720, 36, 18, 60, 40, 300
    n = max(len(rows), 1)
    width = max(width, left + n * (bar + gap) + 40)
    lo = min((r["mean"] - (r["std"] or 0) for r in rows), default=0.0)
    hi = max((r["mean"] + (r["std"] or 0) for r in rows), default=1.0)
    lo, hi = max(0.0, math.floor((lo - 0.02) * 50) / 50), min(1.0, math.ceil((hi + 0.01) * 50) / 50)
    if hi <= lo:
        hi = lo + 0.02
    y = lambda v: top + height * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 90}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="20" font-size="14">{html.escape(title or "test accuracy per row")} '
             f'(final, mean ± std over seeds {html.escape(str(table["seeds"]))})</text>']
    ticks = 5
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        parts.append(f'<line x1="{left - 4}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{100 * v:.1f}</text>')
    for i, r in enumerate(rows):
        x = left + gap + i * (bar + gap)
        color = "#d95f02" if r.get("block") == "ours" else "#1b9e77"
        parts.append(f'<rect x="{x}" y="{y(r["mean"]):.1f}" width="{bar}" height="{top + height - y(r["mean"]):.1f}" '
                     f'fill="{color}"><title>{html.escape(r["method"])}: {_pct(r["mean"], r["std"])}</title></rect>')
        s = r["std"] or 0.0
        cx = x + bar / 2
        parts.append(f'<line x1="{cx}" x2="{cx}" y1="{y(min(hi, r["mean"] + s)):.1f}" '
                     f'y2="{y(max(lo, r["mean"] - s)):.1f}" stroke="black"/>')
        for v in (min(hi, r["mean"] + s), max(lo, r["mean"] - s)):
            parts.append(f'<line x1="{cx - 6}" x2="{cx + 6}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="black"/>')
        parts.append(f'<text transform="translate({cx + 4},{top + height + 10}) rotate(45)">'
                     f'{html.escape(r["method"])}</text>')
    parts.append(f'<text x="12" y="{top + height / 2}" transform="rotate(-90 12,{top + height / 2})" '
                 'text-anchor="middle">test accuracy (%)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------
# training


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _find_reusable(root: Path, cfg: TrainConfig) -> Path | None:
    """A finished run with exactly ``cfg``'s options (but its folder) in a sibling ``reproduce-*`` folder."""
    want = {k: v for k, v in flat_config(cfg.to_dict()).items() if k not in ("out", "device", "num_workers")}
    parent = root.parent
    if not parent.is_dir():
        return None
    for sib in sorted(parent.glob("reproduce-*")):
        if sib.resolve() == root.resolve() or not sib.is_dir():
            continue
        for run_dir in sorted(sib.iterdir()):
            if not is_run_folder(run_dir) or _finished(run_dir, cfg.epochs) is None:
                continue
            try:
                saved = read_run(run_dir).flat_config
            except Exception:  # an unreadable neighbour is simply not reused
                continue
            saved = {k: v for k, v in saved.items() if k not in ("out", "device", "num_workers")}
            # snapshot_every is filled in at train time; compare the options the user controls
            if all(saved.get(k) == v for k, v in want.items() if k != "snapshot_every"):
                return run_dir
    return None


def run_configs(options: Mapping[str, Any], rows: Sequence[Row], seeds: Sequence[int], root: Path
                ) -> list[tuple[Row, int, TrainConfig]]:
    """Every run's validated config (``options`` are the user's; a row's own options win)."""
    out = []
    for row in rows:
        for seed in seeds:
            data = {**options, **row.options, "seed": int(seed), "out": str(root / run_name(row.name, seed))}
            out.append((row, seed, TrainConfig.from_dict(data, source=f"reproduce row {row.name}")))
    return out


def reproduce(options: Mapping[str, Any], root: Path, rows: Sequence[Row], seeds: Sequence[int] = (0,),
              preset: str = "methods", analyse: bool = True, permutations: int = 999,
              log: Callable[[str], None] = _log) -> dict[str, Any] | None:
    """Train (or reuse) every row × seed under ``root`` and write ``<preset>.json/.md/.svg``.

    Parameters
    ----------
    options : mapping
        The user's training options (``--config`` file and flags), shared by every run.
    rows : list of Row
        From :func:`preset_rows`.

    Returns the table, or None when a run was interrupted (Ctrl-C; rerun to continue).
    """
    from blockout.train import resume_config, train

    root = Path(root)
    jobs = run_configs(options, rows, seeds, root)
    total = len(jobs)
    for i, (row, seed, cfg) in enumerate(jobs, 1):
        out = Path(cfg.out)
        where = f"[reproduce {i}/{total}] {row.name} seed {seed} ({out})"
        if _finished(out, cfg.epochs) is not None and not (out / rf.TRAIN_STATE).is_file():
            log(f"{where}: finished, reused")
            continue
        if (out / rf.TRAIN_STATE).is_file():
            overrides = {k: v for k, v in cfg.to_dict().items() if k not in ("out", "snapshot_every")}
            rcfg = resume_config(out, overrides)  # a UserError when the run's options differ from these
            if _finished(out, cfg.epochs) is not None:
                log(f"{where}: finished, reused")
                continue
            log(f"{where}: resuming")
            result = train(rcfg, resume=True)
        else:
            if out.exists() and any(out.iterdir()):
                raise UserError(f"{out} exists but holds no resumable run (no {rf.TRAIN_STATE}); remove it to "
                                "retrain that run")
            source = _find_reusable(root, cfg)
            if source is not None:
                log(f"{where}: the same run is finished in {source}; copied")
                out.parent.mkdir(parents=True, exist_ok=True)
                if out.exists():
                    out.rmdir()
                tmp = out.with_name(out.name + ".copying")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(rf.TRAIN_STATE, "*.lock"))
                tmp.rename(out)
                continue
            log(f"{where}: training")
            result = train(cfg)
        if result.status not in ("finished", "already-finished"):
            return None
    epochs = jobs[0][2].epochs if jobs else None
    log(f"[reproduce] all {total} runs done; analysing")
    table = collect(root, rows, seeds, epochs=epochs, analyse=analyse, permutations=permutations)
    first = jobs[0][2] if jobs else TrainConfig.from_dict(dict(options))
    table["preset"] = preset
    table["permutations"] = permutations
    table["dataset"] = first.dataset
    table["config"] = {k: v for k, v in first.to_dict().items() if k not in ("method", "seed", "out")}
    title = f"Blockout {preset} table on {first.dataset}"
    rf.atomic_write_json(root / f"{preset}.json", table)
    rf.atomic_write_text(root / f"{preset}.md", to_markdown(table, title))
    rf.atomic_write_text(root / f"{preset}.svg", to_svg(table, title))
    return table
