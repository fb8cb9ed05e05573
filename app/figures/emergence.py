"""How the memberships evolve: P histograms, nodes per cluster over time, drift to 1, multipliers."""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.common import color, empty_figure, node_set_color


def prob_histograms(probs: Mapping[str, np.ndarray], *, bins: int = 20, height_per: int = 150) -> go.Figure:
    """One histogram of the entries of P per node set (share of entries per bin).

    The histogram is computed here (``np.histogram``) and drawn as bars, so the figure stays small
    even for 4096 × 15 matrices.
    """
    names = [n for n, p in probs.items() if np.asarray(p).size]
    if not names:
        return empty_figure("this run has no cluster probabilities (not a Blockout run)")
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names,
                        vertical_spacing=min(0.08, 0.3 / len(names)))
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    for i, name in enumerate(names, 1):
        values = np.clip(np.asarray(probs[name], dtype=float).ravel(), 0.0, 1.0)
        counts, _ = np.histogram(values, bins=edges)
        share = counts / max(values.size, 1)
        fig.add_trace(go.Bar(x=centers, y=share, width=1.0 / bins, name=name, marker_color=node_set_color(name),
                             hovertemplate="P in [%{customdata[0]:.2f}, %{customdata[1]:.2f}): "
                                           "%{y:.1%} of entries<extra>" + name + "</extra>",
                             customdata=np.stack([edges[:-1], edges[1:]], axis=1), showlegend=False),
                      row=i, col=1)
        fig.update_yaxes(tickformat=".0%", row=i, col=1)
    fig.update_xaxes(range=[0, 1], title_text="P", row=len(names), col=1)
    fig.update_layout(height=60 + height_per * len(names), margin=dict(l=10, r=10, t=30, b=10),
                      bargap=0.05)
    return fig


def cluster_sizes_over_time(steps: Sequence[int], counts: np.ndarray, *, title: str = "",
                            height: int | None = None) -> go.Figure:
    """Nodes per cluster (at the threshold) at each snapshot step: a heatmap, one row per cluster.

    A row per cluster stays readable at 20 clusters and more (twenty overlapping lines do not);
    the colour is the number of nodes, empty clusters are white, and the number is written in
    each cell when the grid is small enough to read it.

    Parameters
    ----------
    steps : sequence of int, length S
    counts : array, shape (S, k)
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != len(steps) or counts.size == 0:
        return empty_figure("no snapshots to show")
    S, k = counts.shape
    z = counts.T.astype(float)  # (k, S)
    show_text = S * k <= 600 and S <= 40
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(s) for s in steps], y=[f"cluster {c}" for c in range(k)],
        colorscale=[[0.0, "#ffffff"], [1e-9, "#deebf7"], [1.0, "#08306b"]], zmin=0,
        colorbar=dict(title=dict(text="nodes"), thickness=12),
        text=counts.T.astype(int).astype(str) if show_text else None,
        texttemplate="%{text}" if show_text else None, textfont=dict(size=9),
        hovertemplate="%{y}: %{z:.0f} nodes at step %{x}<extra></extra>", xgap=1, ygap=1))
    fig.update_xaxes(title_text="snapshot step", type="category")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title or None, height=height or int(min(900, max(240, 22 * k + 90))),
                      margin=dict(l=10, r=10, t=40 if title else 20, b=10))
    return fig


def drift_figure(steps: Sequence[int], series: Mapping[str, Mapping[str, np.ndarray]], *,
                 height: int = 300) -> go.Figure:
    """The drift-to-1 failure mode: mean P and the share of P ≥ 0.9 per node set over training.

    Parameters
    ----------
    steps : sequence of int, length S
    series : mapping node set -> dict with ``mean`` and ``share_high`` arrays of length S
        (see :func:`analysis.dynamics.drift_series`).
    """
    if not series:
        return empty_figure("no trainable cluster probabilities in this run")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean P", "share of P ≥ 0.9"))
    for i, (name, s) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(steps), y=s["mean"], name=name, mode="lines",
                                 line=dict(color=node_set_color(name)), legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=list(steps), y=s["share_high"], name=name, mode="lines",
                                 line=dict(color=node_set_color(name)), legendgroup=name, showlegend=False),
                      row=1, col=2)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def multipliers_figure(steps: Sequence[int], multipliers: Mapping[str, np.ndarray], *,
                       height: int = 300) -> go.Figure:
    """Budget multipliers over training: per layer the mean (line) and min–max range (band).

    Parameters
    ----------
    steps : sequence of int, length S
    multipliers : mapping layer -> array (S, m) (NaN where a snapshot has none)
    """
    if not multipliers:
        return empty_figure("this run has no budget multipliers")
    fig = go.Figure()
    x = list(steps)
    for i, (name, arr) in enumerate(multipliers.items()):
        arr = np.asarray(arr, dtype=float).reshape(len(x), -1)
        with warnings.catch_warnings():  # all-NaN rows (no multiplier at that step) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi, mean = np.nanmin(arr, axis=1), np.nanmax(arr, axis=1), np.nanmean(arr, axis=1)
        c = color(i)
        fig.add_trace(go.Scatter(x=x + x[::-1], y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 fillcolor=c, opacity=0.2, line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=f"{name} (mean, band = min–max)",
                                 line=dict(color=c), legendgroup=name))
    fig.update_layout(height=height, xaxis_title="step", yaxis_title="multiplier",
                      margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def prob_animation(steps: Sequence[int], history: Mapping[str, np.ndarray], *, bins: int = 20,
                   height_per: int = 140) -> go.Figure:
    """Animated P histograms: one subplot per node set, one frame per snapshot, ▶ button and slider.

    Parameters
    ----------
    steps : sequence of int, length S
    history : mapping node set -> array (S, n, k) of P over the snapshots

    The histograms are computed here (S × sets × bins numbers), so the animation stays small at
    any layer size.
    """
    names = [n for n, h in history.items() if np.asarray(h).size]
    steps = list(steps)
    if not names or not steps:
        return empty_figure("this run has no cluster probabilities (not a Blockout run)")
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    shares = {}
    for name in names:
        h = np.asarray(history[name], dtype=float).reshape(len(steps), -1)
        if h.shape[0] != len(steps):
            raise ValueError(f"history of {name!r} has {h.shape[0]} steps, expected {len(steps)}")
        counts = np.stack([np.histogram(np.clip(row, 0, 1), bins=edges)[0] for row in h])  # (S, bins)
        shares[name] = counts / max(h.shape[1], 1)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names,
                        vertical_spacing=min(0.08, 0.3 / len(names)))

    def bars(t: int) -> list[go.Bar]:
        return [go.Bar(x=centers, y=shares[name][t], width=1.0 / bins, marker_color=node_set_color(name),
                       showlegend=False, name=name,
                       hovertemplate="P ≈ %{x:.2f}: %{y:.1%} of entries<extra>" + name + "</extra>")
                for i, name in enumerate(names)]

    last = len(steps) - 1
    for i, trace in enumerate(bars(last), 1):
        fig.add_trace(trace, row=i, col=1)
    top = max(float(s.max()) for s in shares.values())
    for i in range(1, len(names) + 1):
        fig.update_yaxes(range=[0, min(1.0, top * 1.05) or 1.0], tickformat=".0%", row=i, col=1)
    fig.update_xaxes(range=[0, 1])
    fig.update_xaxes(title_text="P", row=len(names), col=1)
    fig.frames = [go.Frame(data=bars(t), name=str(s), traces=list(range(len(names))))
                  for t, s in enumerate(steps)]
    play = dict(label="▶ play", method="animate",
                args=[None, dict(frame=dict(duration=600, redraw=True), transition=dict(duration=200),
                                 fromcurrent=True, mode="immediate")])
    pause = dict(label="❚❚", method="animate",
                 args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])
    fig.update_layout(
        height=150 + height_per * len(names), bargap=0.05, margin=dict(l=10, r=10, t=30, b=70),
        updatemenus=[dict(type="buttons", direction="left", buttons=[play, pause], x=0.0, y=-0.1,
                          xanchor="left", yanchor="top", showactive=False)],
        sliders=[dict(active=last, x=0.12, len=0.88, y=-0.06, yanchor="top",
                      currentvalue=dict(prefix="step "),
                      steps=[dict(label=str(s), method="animate",
                                  args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                       transition=dict(duration=0))])
                             for s in steps])],
    )
    return fig
