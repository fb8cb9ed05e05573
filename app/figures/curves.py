"""Training curves: accuracy and loss over steps, for one run or several side by side."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.common import color, empty_figure

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


def training_curves(metrics: Sequence[Mapping], *, height: int = 320) -> go.Figure:
    """Accuracy (left) and loss (right) against the training step.

    Parameters
    ----------
    metrics : sequence of dict
        The run's ``metrics.jsonl`` rows (``step`` and any of ``train_acc``, ``test_acc``,
        ``train_loss``, ``test_loss``).
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
                       line=dict(color=color(0 if "test" in key else 1), dash=dash)),
            row=1, col=col,
        )
    if drawn == 0:
        return empty_figure("metrics hold no accuracy or loss values")
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
