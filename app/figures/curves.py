"""Training curves: accuracy and loss over steps, for one run or several side by side."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.common import SERIES_COLORS, color, empty_figure

_SERIES = (
    # (metrics key, subplot column, legend name, dash)
    ("train_acc", 1, "train accuracy", "dot"),
    ("test_acc", 1, "test accuracy", "solid"),
    ("train_loss", 2, "train loss", "dot"),
    ("test_loss", 2, "test loss", "solid"),
)


def _series(metrics: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of ``key`` over the evaluations that report a finite number."""
    xs, ys = [], []
    for row in metrics:
        value = row.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value) and "step" in row:
            xs.append(row["step"])
            ys.append(float(value))
    return np.asarray(xs), np.asarray(ys)


#: Training caption shared by the Overview and the report: why train accuracy can sit below test.
SAMPLING_CAPTION = (
    "Train accuracy is the running mean over each epoch of the network *as trained*: every batch "
    "draws random masks (dropout, and Blockout's sampled cluster memberships), so it often sits "
    "below test accuracy, which uses the deterministic network (expected masks, no dropout) after the "
    "epoch. Dashed vertical lines mark the training phases read from the run's configuration.")


def _epoch_end_step(metrics: Sequence[Mapping], epochs: int) -> int | None:
    """The step at which ``epochs`` epochs were complete (from the metrics rows), else None."""
    for row in metrics:
        if row.get("epoch") == epochs and "step" in row:
            return int(row["step"])
    # Not evaluated at that epoch: interpolate from steps per epoch.
    rows = [r for r in metrics if isinstance(r.get("epoch"), int) and r["epoch"] > 0 and "step" in r]
    if not rows:
        return None
    per = rows[-1]["step"] / rows[-1]["epoch"]
    return int(round(per * epochs))


def training_phases(config: Mapping, metrics: Sequence[Mapping]) -> list[tuple[int, str]]:
    """Steps where training changes phase, from the run's config (``run.json``) and metrics.

    Returns ``[(step, label), ...]`` sorted by step: the end of the learning-rate warm-up, the
    start of membership training, soft → hard masks, the co-clustered warm start, the end of the
    mask fade-in and the freezing of the memberships — each only when the config enables it
    and the run got that far.

    >>> rows = [{"step": 40 * e, "epoch": e} for e in range(1, 31)]
    >>> training_phases({"cocluster_at": 10, "freeze_after": 15, "warmup_steps": 0}, rows)
    [(400, 'co-clustering'), (600, 'memberships frozen')]
    """
    last = max((int(r["step"]) for r in metrics if "step" in r), default=None)
    out = []

    def at_epoch(epochs, label):
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
            step = _epoch_end_step(metrics, epochs)
            if step is not None and last is not None and step <= last:
                out.append((step, label))

    warm = config.get("warmup_steps")
    if isinstance(warm, int) and warm > 0 and last is not None and warm <= last:
        out.append((warm, "lr warm-up ends"))
    at_epoch(config.get("membership_warmup"), "memberships start training")
    at_epoch(config.get("soft_epochs"), "soft → hard masks")
    cc = config.get("cocluster_at")
    at_epoch(cc, "co-clustering")
    anneal = config.get("cocluster_anneal_epochs")
    if isinstance(cc, int) and isinstance(anneal, int) and anneal > 0:
        at_epoch(cc + anneal, "mask fully in")
    at_epoch(config.get("freeze_after"), "memberships frozen")
    return sorted(out)


def training_curves(metrics: Sequence[Mapping], *, height: int = 340,
                    phases: Sequence[tuple[int, str]] = ()) -> go.Figure:
    """Accuracy (left) and loss (right) against the training step, with phase changes marked.

    Parameters
    ----------
    metrics : sequence of dict
        The run's ``metrics.jsonl`` rows (``step`` and any of ``train_acc``, ``test_acc``,
        ``train_loss``, ``test_loss``).
    phases : sequence of (step, label)
        Vertical dashed lines with their label (see :func:`training_phases`).
    """
    if not metrics:
        return empty_figure("no evaluations recorded yet")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"))
    drawn = 0
    for key, col, name, dash in _SERIES:
        x, y = _series(metrics, key)
        if x.size == 0:
            continue
        drawn += 1
        fig.add_trace(
            go.Scatter(x=x, y=y, name=name, mode="lines+markers" if x.size < 40 else "lines",
                       line=dict(color=SERIES_COLORS["test" if "test" in key else "train"], dash=dash)),
            row=1, col=col,
        )
    if drawn == 0:
        return empty_figure("metrics hold no accuracy or loss values")
    for i, (step, label) in enumerate(phases):
        for col in (1, 2):
            fig.add_vline(x=step, line=dict(color="#888", dash="dash", width=1), row=1, col=col)
        fig.add_annotation(x=step, y=1.0 - 0.08 * (i % 3), xref="x", yref="y domain", text=label,
                           showarrow=False, xanchor="left", font=dict(size=10, color="#555"),
                           bgcolor="rgba(255,255,255,0.7)")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def compare_curves(runs: Mapping[str, Sequence[Mapping]], *, key: str = "test_acc",
                   height: int = 320) -> go.Figure:
    """One line per run for metric ``key`` (and its ``train_`` twin dotted when present).

    Parameters
    ----------
    runs : mapping of run label -> metrics rows
    key : str
        A ``metrics.jsonl`` key, e.g. ``"test_acc"`` or ``"test_loss"``.
    """
    fig = go.Figure()
    for i, (label, metrics) in enumerate(runs.items()):
        x, y = _series(metrics, key)
        if x.size:
            fig.add_trace(go.Scatter(x=x, y=y, name=f"{label}: {key}", mode="lines",
                                     line=dict(color=color(i))))
        twin = key.replace("test_", "train_")
        if twin != key:
            x2, y2 = _series(metrics, twin)
            if x2.size:
                fig.add_trace(go.Scatter(x=x2, y=y2, name=f"{label}: {twin}", mode="lines",
                                         line=dict(color=color(i), dash="dot")))
    if not fig.data:
        return empty_figure(f"no run reports {key!r}")
    fig.update_layout(height=height, xaxis_title="step", yaxis_title=key,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25))
    return fig
