"""``blockout compile RUN``: turn a run's thresholded hierarchy into a branched network, and measure it.

Writes into ``-o OUT`` (a folder): ``compiled.pt`` (state dict + JSON structure, loads with
:func:`blockout.compile.load_compiled`, i.e. ``torch.load(..., weights_only=True)``),
``structure.json``, ``compiled.pt2`` (a ``torch.export`` program that runs without this project),
``finetuned.pt`` / ``finetuned.pt2`` with ``--finetune N``, and ``compile.json`` (the report that is
also printed): accuracy of the expected-mask, thresholded and compiled models on the run's test
set, the largest difference between the compiled and the thresholded outputs, parameters and
multiply-adds before/after, live density per layer, removed nodes and the branch structure.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from torch import nn

from analysis import runfolder as rf
from analysis.compile_plan import macs_reduction
from blockout.errors import UserError

#: Largest |compiled - thresholded| logit difference accepted as "the same outputs" (float32).
EXACT_TOL = 1e-5


def _no_grad(fn):
    """``@torch.no_grad()`` that imports torch when ``fn`` runs, not when this module is imported.

    ``blockout.cli`` imports this module to build the ``compile`` parser: torch at module level
    would cost every ``blockout`` command (even ``--help``) seconds of startup.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _test_set(inputs, need_train: bool = False):
    """``(train, test)`` datasets rebuilt from the run's config, or a one-line reason why not."""
    config = inputs.run.config
    if not config.get("dataset"):
        return None, "the run's config names no dataset (a planted run folder?)"
    from blockout.data import load_dataset

    try:
        train, test, info = load_dataset(
            config["dataset"], data_dir=config.get("data_dir"), hierarchy=config.get("hierarchy"),
            samples_per_class=config.get("samples_per_class"),
            test_samples_per_class=config.get("test_samples_per_class"), seed=int(config.get("data_seed", 0)),
            image_size=int(config.get("image_size", 32)))
    except UserError as exc:
        return None, f"the run's dataset could not be rebuilt ({exc})"
    if list(info.input_shape) != list(inputs.input_shape):
        return None, (f"the rebuilt dataset has input shape {list(info.input_shape)}, the run "
                      f"{list(inputs.input_shape)}")
    return (train, test), None


def _batches(ds, batch_size: int):
    import torch

    for i in range(0, len(ds), batch_size):
        idx = list(range(i, min(len(ds), i + batch_size)))
        if hasattr(ds, "get_batch"):
            yield ds.get_batch(idx)
        else:
            xs, ys = zip(*(ds[j] for j in idx))
            yield torch.stack(xs), torch.as_tensor(ys)


@_no_grad
def evaluate(models: dict[str, nn.Module], ds, batch_size: int = 500) -> tuple[dict[str, float], float]:
    """Accuracy of every model on ``ds`` and the largest |compiled - thresholded| logit difference."""
    for m in models.values():
        m.eval()
    correct = {k: 0 for k in models}
    n, diff = 0, 0.0
    for x, y in _batches(ds, batch_size):
        outs = {k: m(x) for k, m in models.items()}
        for k, o in outs.items():
            correct[k] += int((o.argmax(1) == y).sum())
        if "compiled" in outs and "thresholded" in outs:
            diff = max(diff, float((outs["compiled"] - outs["thresholded"]).abs().max()))
        n += len(y)
    return {k: c / max(1, n) for k, c in correct.items()}, diff


@_no_grad
def random_difference(net: nn.Module, ref: nn.Module, shape: list[int], n: int = 256, seed: int = 0,
                      nonnegative: bool = False) -> float:
    """Largest |net - ref| output difference on ``n`` seeded standard-normal inputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    if nonnegative:  # trunk features come out of a ReLU
        x = x.abs()
    return float((net.eval()(x) - ref.eval()(x)).abs().max())


def finetune(net: nn.Module, train_ds, config: dict, epochs: int, seed: int = 0,
             progress: Callable[[str], None] = log) -> dict:
    """Train every weight of the compiled network for ``epochs`` (SplitNet's fine-tuning step).

    Adam at the run's learning rate with a cosine schedule over the fine-tuning steps, weight
    decay on weight matrices as in the run, the run's batch size; the order is seeded.
    """
    import torch
    from torch import nn

    lr = float(config.get("lr") or 1e-3)
    wd = float(config.get("weight_decay") or 0.0)
    bs = int(config.get("batch_size") or 128)
    decay = [p for n_, p in net.named_parameters() if p.ndim >= 2]
    other = [p for n_, p in net.named_parameters() if p.ndim < 2]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}], lr=lr)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(train_ds) // bs)
    total = steps_per_epoch * epochs
    step, t0 = 0, time.perf_counter()
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(train_ds), generator=g).tolist()
        loss_sum, seen = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            if hasattr(train_ds, "get_batch"):
                x, y = train_ds.get_batch(idx)
            else:
                xs, ys = zip(*(train_ds[i] for i in idx))
                x, y = torch.stack(xs), torch.as_tensor(ys)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
        progress(f"fine-tune epoch {epoch + 1}/{epochs}: train loss {loss_sum / max(1, seen):.4f}")
    net.eval()
    return {"epochs": epochs, "lr": lr, "batch_size": bs, "steps": step, "seconds": time.perf_counter() - t0}


def compile_run(run: str | Path, out: str | Path, tau: float = 0.5, step: int | None = None,
                finetune_epochs: int = 0, seed: int = 0, export: bool = True,
                progress: Callable[[str], None] = log) -> dict:
    """Compile ``run`` at ``tau`` into ``out``; measure; return the report (also ``out/compile.json``)."""
    import torch
    from torch import nn

    from blockout.compile import (compile_run_network, export_compiled, load_compile_inputs, params_of,
                                  reference_net, save_compiled)

    if finetune_epochs < 0:
        raise UserError(f"--finetune must be >= 0, got {finetune_epochs}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out} exists and is not a folder")
    run_dir = Path(run).resolve()
    if run_dir.is_dir() and (out.resolve() == run_dir or run_dir in out.resolve().parents):
        # the output files would land among the run's own files (e.g. in the bundled demo's tracked folder)
        raise UserError(f"-o {out} is inside the run folder {run}: choose an output folder outside it")
    t0 = time.perf_counter()
    inputs = load_compile_inputs(run, tau, step)
    have_trunk = inputs.trunk_spec is not None
    data, acc_note = None, None
    if not have_trunk:
        acc_note = "accuracy not measured: " + (inputs.trunk_note or "no trunk")
    else:
        t_data = time.perf_counter()
        data, data_note = _test_set(inputs)
        t0 += time.perf_counter() - t_data  # rebuilding the dataset is not compiling
        if data is None:
            acc_note = "accuracy not measured: " + data_note
    if finetune_epochs and data is None:
        # refuse before compiling, so that a refused command leaves no half-written OUT behind
        raise UserError(f"--finetune needs the run's data and trunk ({acc_note})")
    net, thr, exp = compile_run_network(inputs, with_expected=data is not None)
    t_compile = time.perf_counter() - t0
    plan = inputs.plan
    names = inputs.run.class_names
    trunk = inputs.trunk if inputs.trunk is not None else (
        nn.Flatten(1) if have_trunk else None)  # identity trunk: flatten
    ref_thr = reference_net(trunk, thr)

    report: dict[str, Any] = {
        "run": inputs.run.name, "path": str(inputs.run.path), "tau": inputs.tau, "step": inputs.step,
        "weights_step": inputs.weights_step, "masks": {k: {"mask": m, "scale": s} for k, (m, s) in inputs.masks.items()},
        "trunk": {"kind": inputs.trunk_kind, "included": have_trunk, "params": params_of(inputs.trunk),
                  "note": inputs.trunk_note},
    }
    s = plan.summary(names)
    trunk_params = params_of(inputs.trunk)
    report["params"] = {"fc_before": s["params_before"], "fc_after": s["params_after"], "trunk": trunk_params,
                        "before": s["params_before"] + trunk_params, "after": s["params_after"] + trunk_params}
    report["macs"] = {"fc_before": s["macs_before"], "fc_after": s["macs_after"], "fc_ratio": s["macs_ratio"],
                      "note": "multiply-adds per example of the FC stack; the trunk is unchanged"}
    report["layers"] = s["layers"]
    report["kept_nodes"], report["removed_nodes"] = s["kept_nodes"], s["removed_nodes"]
    report["const_classes"] = s["const_classes"]
    report["branches"] = s["branches"]
    report["structure"] = [{"layer": lay["name"], "kind": lay["kind"], "blocks": len(lay["blocks"])}
                           for lay in net.head.layers]

    # ---- accuracy and exactness
    accuracy = None
    t1 = time.perf_counter()
    if data is not None:
        progress(f"evaluating on the test set ({len(data[1])} examples)")
        accuracy, diff = evaluate({"expected": reference_net(trunk, exp), "thresholded": ref_thr, "compiled": net},
                                  data[1])
        exact = {"max_abs_diff": diff, "inputs": f"test set ({len(data[1])} examples)"}
    else:
        shape = list(inputs.input_shape) if have_trunk else [inputs.n_trunk]
        diff = random_difference(net if have_trunk else net.head, ref_thr if have_trunk else reference_net(None, thr),
                                 shape, nonnegative=not have_trunk, seed=seed)
        exact = {"max_abs_diff": diff, "inputs": f"256 seeded random inputs of shape {shape}"}
    exact["tolerance"] = EXACT_TOL
    exact["ok"] = bool(diff <= EXACT_TOL)
    report["exactness"] = exact
    report["accuracy"] = accuracy
    report["accuracy_note"] = acc_note
    t_eval = time.perf_counter() - t1

    # ---- save and export
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    example = torch.zeros(2, *(inputs.input_shape if have_trunk else [inputs.n_trunk]))
    t2 = time.perf_counter()
    save_compiled(net, out / "compiled.pt")
    rf.atomic_write_json(out / "structure.json", net.structure)
    files["compiled"] = "compiled.pt"
    files["structure"] = "structure.json"
    if export:
        kind = export_compiled(net, out / "compiled.pt2", example)
        files["export"] = "compiled.pt2" if kind == "torch.export" else "compiled.ts.pt"
        files["export_kind"] = kind
    t_save = time.perf_counter() - t2

    # ---- fine-tuning
    report["finetune"] = None
    if finetune_epochs:
        progress(f"fine-tuning the compiled network for {finetune_epochs} epoch(s)")
        ft = finetune(net, data[0], inputs.run.config, finetune_epochs, seed=seed, progress=progress)
        acc, _ = evaluate({"finetuned": net}, data[1])
        ft["accuracy"] = acc["finetuned"]
        report["finetune"] = ft
        report["accuracy"]["finetuned"] = acc["finetuned"]
        save_compiled(net, out / "finetuned.pt")
        files["finetuned"] = "finetuned.pt"
        if export:
            kind = export_compiled(net, out / "finetuned.pt2", example)
            files["finetuned_export"] = "finetuned.pt2" if kind == "torch.export" else "finetuned.ts.pt"
    report["files"] = files
    report["seconds"] = {"compile": t_compile, "evaluate": t_eval, "save_export": t_save}
    rf.atomic_write_json(out / "compile.json", report)
    return report


def _n(x: int) -> str:
    return f"{x:,}"


def format_report(r: dict) -> str:
    """The printed form of a :func:`compile_run` report."""
    lines = [f"compiled {r['run']} at τ = {r['tau']:g} (memberships of step {r['step']}, weights of step "
             f"{r['weights_step']})"]
    if r["trunk"]["note"]:
        lines.append(f"note: {r['trunk']['note']}")
    p, m = r["params"], r["macs"]
    fc = (f"parameters: FC {_n(p['fc_before'])} -> {_n(p['fc_after'])} "
          f"({p['fc_after'] / max(1, p['fc_before']):.1%})")
    if r["trunk"]["included"]:
        fc += f"; with the unchanged trunk ({_n(p['trunk'])}): {_n(p['before'])} -> {_n(p['after'])}"
    else:  # its weights are not in the run folder: not counted, never shown as a 0-parameter trunk
        fc += "; the trunk is not included (its weights are not in the run folder)"
    lines.append(fc)
    fewer = macs_reduction(m["fc_before"], m["fc_after"], "x")
    lines.append(f"multiply-adds per example (FC stack): {_n(m['fc_before'])} -> {_n(m['fc_after'])} "
                 f"({m['fc_ratio']:.1%}, {fewer})")
    lines.append(f"{'layer':<12} {'in->out':>12} {'live density':>13} {'kept in->out':>14} {'blocks':>7} {'kind':>7}")
    kinds = {s["layer"]: s["kind"] for s in r["structure"]}
    for lay in r["layers"]:
        lines.append(f"{lay['layer']:<12} {lay['in_features']:>5}->{lay['out_features']:<6} "
                     f"{lay['live_density']:>13.3f} {lay['kept_in']:>6}->{lay['kept_out']:<7} {lay['blocks']:>7} "
                     f"{kinds.get(lay['layer'], '-'):>7}")
    removed = {k: v for k, v in r["removed_nodes"].items() if v}
    if removed:
        lines.append("removed nodes (no cluster, or no live path to a class): "
                     + ", ".join(f"{k} {v}" for k, v in removed.items()))
    if r["const_classes"]:
        shown = ", ".join(map(str, r["const_classes"][:10])) + (" ..." if len(r["const_classes"]) > 10 else "")
        lines.append(f"{len(r['const_classes'])} class(es) have no live path at this τ and predict from their "
                     f"bias alone: {shown}")
    lines.append(f"branches below the trunk: {len(r['branches'])}")
    for i, b in enumerate(r["branches"][:12]):
        cls = ", ".join(map(str, b["classes"][:8])) + (" ..." if len(b["classes"]) > 8 else "")
        lines.append(f"  branch {i + 1}: {b['nodes']} hidden nodes, {len(b['classes'])} classes: {cls}")
    if len(r["branches"]) > 12:
        lines.append(f"  ... {len(r['branches']) - 12} more (compile.json lists them all)")
    e = r["exactness"]
    lines.append(f"max |compiled - thresholded| = {e['max_abs_diff']:.3g} on {e['inputs']} "
                 f"({'same outputs' if e['ok'] else 'MISMATCH'}: tolerance {e['tolerance']:g})")
    a = r["accuracy"]
    if a:
        lines.append(f"test accuracy: expected-mask {a['expected']:.4f}, thresholded {a['thresholded']:.4f}, "
                     f"compiled {a['compiled']:.4f}"
                     + (f", after {r['finetune']['epochs']} fine-tuning epoch(s) {a['finetuned']:.4f}"
                        if "finetuned" in a else ""))
    else:
        lines.append(r["accuracy_note"])
    f = r["files"]
    lines.append(f"wrote {', '.join(v for k, v in f.items() if k != 'export_kind')}, compile.json "
                 f"(compile {r['seconds']['compile']:.2f} s, save + export {r['seconds']['save_export']:.2f} s)")
    return "\n".join(lines)


def add_compile(sub) -> None:
    p = sub.add_parser(
        "compile", help="compile a run's learned hierarchy into a branched network",
        description="Threshold the memberships (C = P >= τ), remove dead nodes and nodes with no live path "
                    "to a class, and build the branched network: every FC layer becomes dense blocks where "
                    "connections live (grouped matrix products), the trunk unchanged. Saves it "
                    "(compiled.pt: state dict + JSON structure; compiled.pt2: torch.export program), checks "
                    "that its outputs equal the thresholded model's, and reports accuracy (expected-mask, "
                    "thresholded, compiled), parameters and multiply-adds before/after, live density per "
                    "layer and the branches.")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder (created; files in it are replaced)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T", help="τ: node in cluster when P >= τ (default 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S",
                   help="snapshot step of the memberships (default: the last one with weights); weights from the nearest snapshot with weights")
    p.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                   help="train the compiled network this many epochs and report its accuracy (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of fine-tuning and of random exactness inputs (default 0)")
    p.add_argument("--no-export", action="store_true", help="skip the torch.export program")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.set_defaults(handler=cmd_compile)


def cmd_compile(args: argparse.Namespace) -> int:
    report = compile_run(args.run, args.out, tau=args.threshold, step=args.step, finetune_epochs=args.finetune,
                         seed=args.seed, export=not args.no_export)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0 if report["exactness"]["ok"] else 1

