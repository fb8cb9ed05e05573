"""Agreement with reference hierarchies: metric per WordNet depth with the permutation null."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.common import empty_figure, source_color

METRIC_NAMES = {"ari": "adjusted Rand", "nmi": "NMI", "fmi": "Fowlkes–Mallows"}


def agreement_by_depth(rows: Sequence[Mapping], *, metrics: Sequence[str] = ("ari", "nmi", "fmi"),
                       height: int = 330) -> go.Figure:
    """One panel per metric: observed agreement per WordNet depth, per network hierarchy, with the
    null mean ± 2 standard deviations as a shaded band.

    Parameters
    ----------
    rows : sequence of dict
        ``source`` (e.g. "memberships"), ``metric`` ("ari" | "nmi" | "fmi"), ``depth`` (int),
        ``observed``, ``null_mean``, ``null_std`` (float or None) and ``p`` (float or None).
    """
    rows = [r for r in rows if r.get("depth") is not None and r.get("observed") is not None]
    if not rows:
        return empty_figure("no WordNet depth gives a non-trivial grouping of these classes")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_NAMES.get(m, m) for m in metrics])
    sources = list(dict.fromkeys(r["source"] for r in rows))
    for col, metric in enumerate(metrics, 1):
        for i, src in enumerate(sources):
            sel = sorted((r for r in rows if r["source"] == src and r["metric"] == metric), key=lambda r: r["depth"])
            if not sel:
                continue
            d = [r["depth"] for r in sel]
            obs = [r["observed"] for r in sel]
            mean = np.array([np.nan if r.get("null_mean") is None else r["null_mean"] for r in sel])
            std = np.array([0.0 if r.get("null_std") is None else r["null_std"] for r in sel])
            c = source_color(src)
            fig.add_trace(go.Scatter(x=d + d[::-1], y=np.r_[mean + 2 * std, (mean - 2 * std)[::-1]],
                                     fill="toself", fillcolor=c, opacity=0.15, line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=src), row=1, col=col)
            fig.add_trace(go.Scatter(x=d, y=mean, mode="lines", line=dict(color=c, dash="dot", width=1),
                                     name=f"{src}: null mean ± 2 sd (band)", legendgroup=src, showlegend=col == 1,
                                     hovertemplate="null mean %{y:.3f} at depth %{x}<extra></extra>"),
                          row=1, col=col)
            fig.add_trace(go.Scatter(
                x=d, y=obs, mode="lines+markers", line=dict(color=c), name=src, legendgroup=src,
                showlegend=col == 1,
                customdata=[[r.get("p") if r.get("p") is not None else float("nan"),
                             r.get("n_groups", 0)] for r in sel],
                hovertemplate=f"{src}<br>depth %{{x}}: %{{y:.3f}}<br>p = %{{customdata[0]:.3g}}, "
                              "%{customdata[1]} groups<extra></extra>"),
                row=1, col=col)
    fig.update_xaxes(title_text="WordNet depth", dtick=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig
