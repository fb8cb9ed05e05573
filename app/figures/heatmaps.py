"""Block-ordered weight heatmaps (W, expected mask, W̃) with cluster boundaries, and in-block mass."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.common import empty_figure

#: Largest side drawn as is; bigger matrices must be block-averaged first (plotly sends every
#: cell to the browser: 4096 × 4096 floats would be ~100 MB of JSON).
MAX_DRAW = 400


def block_mean(mat: np.ndarray, max_side: int = MAX_DRAW) -> tuple[np.ndarray, float, float]:
    """Average ``mat`` over rectangular tiles so that neither side exceeds ``max_side``.

    Used only when the analysis package hands over a matrix that is still too big to draw.
    Returns the reduced matrix and the row and column scale factors (original per drawn cell).

    >>> m, fr, fc = block_mean(np.arange(16.0).reshape(4, 4), max_side=2)
    >>> m.tolist(), fr, fc
    ([[2.5, 4.5], [10.5, 12.5]], 2.0, 2.0)
    """
    mat = np.asarray(mat, dtype=float)
    rows, cols = mat.shape
    fr = int(np.ceil(rows / max_side)) if rows > max_side else 1
    fc = int(np.ceil(cols / max_side)) if cols > max_side else 1
    if fr == 1 and fc == 1:
        return mat, 1.0, 1.0
    pr, pc = (-rows) % fr, (-cols) % fc
    padded = np.pad(mat, ((0, pr), (0, pc)), constant_values=np.nan)  # (R', C')
    tiles = padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc)
    return np.nanmean(tiles, axis=(1, 3)), float(fr), float(fc)


def _bound_shapes(bounds: Sequence[float], axis: str, extent: float, xref: str, yref: str) -> list[dict]:
    shapes = []
    for b in bounds:
        if axis == "row":
            shapes.append(dict(type="line", x0=-0.5, x1=extent - 0.5, y0=b - 0.5, y1=b - 0.5,
                               xref=xref, yref=yref, line=dict(color="black", width=1)))
        else:
            shapes.append(dict(type="line", y0=-0.5, y1=extent - 0.5, x0=b - 0.5, x1=b - 0.5,
                               xref=xref, yref=yref, line=dict(color="black", width=1)))
    return shapes


def block_heatmaps(
    panels: Sequence[tuple[str, np.ndarray, bool]],
    *,
    row_bounds: Sequence[float] = (),
    col_bounds: Sequence[float] = (),
    row_scale: float = 1.0,
    col_scale: float = 1.0,
    height: int = 420,
) -> go.Figure:
    """Side-by-side heatmaps of already ordered (and, if large, already reduced) matrices.

    Parameters
    ----------
    panels : sequence of (title, matrix (R, C), diverging)
        ``diverging`` panels (weights) get a red–blue scale symmetric about 0; the others (masks)
        a sequential scale from 0.
    row_bounds, col_bounds : sequence of float
        Cluster boundaries in drawn-cell units (a line is drawn *before* each listed index).
    row_scale, col_scale : float
        Original rows/columns per drawn cell (1 when not reduced), shown in the hover.
    """
    panels = [(t, np.asarray(m, dtype=float), d) for t, m, d in panels if np.asarray(m).size]
    if not panels:
        return empty_figure("no weights saved at this step")
    for title, mat, _ in panels:
        if mat.shape[0] > MAX_DRAW * 1.5 or mat.shape[1] > MAX_DRAW * 1.5:
            raise ValueError(f"panel {title!r} is {mat.shape}: block-average it before drawing")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.07)
    shapes: list[dict] = []
    for i, (title, mat, diverging) in enumerate(panels, 1):
        finite = mat[np.isfinite(mat)]
        if diverging:
            lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
            scale = dict(colorscale="RdBu_r", zmin=-lim or -1.0, zmax=lim or 1.0, zmid=0.0)
        else:
            top = float(finite.max()) if finite.size else 1.0
            scale = dict(colorscale="Viridis", zmin=0.0, zmax=top if top > 0 else 1.0)
        dom = fig.layout[f"xaxis{i if i > 1 else ''}"].domain  # colour bar right of its own panel
        fig.add_trace(
            go.Heatmap(z=mat, showscale=True, colorbar=dict(len=0.8, thickness=8, x=dom[1] + 0.003,
                                                            xpad=2, tickfont=dict(size=9)),
                       hovertemplate=f"{title}<br>row %{{y}} col %{{x}}<br>value %{{z:.3g}}"
                                     + (f"<br>(cell = {row_scale:g}×{col_scale:g} mean)"
                                        if row_scale > 1 or col_scale > 1 else "")
                                     + "<extra></extra>",
                       **scale),
            row=1, col=i,
        )
        xref = f"x{i if i > 1 else ''}"
        yref = f"y{i if i > 1 else ''}"
        shapes += _bound_shapes(row_bounds, "row", mat.shape[1], xref, yref)
        shapes += _bound_shapes(col_bounds, "col", mat.shape[0], xref, yref)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=height, shapes=shapes, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def in_block_mass_figure(layers: Sequence[str], inside: Sequence[float],
                         chance: Sequence[float] | None = None, *, height: int = 280) -> go.Figure:
    """Share of |W̃| mass inside the allowed blocks per layer, beside the share of allowed cells.

    Parameters
    ----------
    layers : layer names
    inside : share of |W̃| inside allowed blocks, per layer (0–1)
    chance : share of cells that are inside allowed blocks (what uniform weights would give)
    """
    if not layers:
        return empty_figure("no Blockout layers with weights at this step")
    fig = go.Figure(go.Bar(x=list(layers), y=list(inside), name="|W̃| mass inside blocks",
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    if chance is not None:
        fig.add_trace(go.Bar(x=list(layers), y=list(chance), name="share of cells inside blocks",
                             hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(height=height, barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%"),
                      margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def _drawn_bounds(boundaries, edges) -> list[float]:
    # Boundaries are in node positions; the drawn matrix has one cell per bin of `edges`.
    f = float(edges[1]) if len(edges) > 1 else 1.0
    b = np.asarray(boundaries, dtype=float) / f
    return b.tolist() if len(b) <= 150 else []  # too many signatures: lines would hide the picture


def layer_blocks_figure(data: dict, tau: float) -> tuple[go.Figure, str]:
    """The Weight blocks page's figure of one layer and its caption, from
    :func:`app.derive.layer_heatmap` data: |W| alone for a plain layer; |W|, E[M] and |W̃| in
    signature order with the boundaries for a Blockout layer."""
    rows, cols = data["shape"]
    re, ce = data["row_edges"], data["col_edges"]
    scale_r = float(re[1]) if len(re) > 1 else 1.0
    scale_c = float(ce[1]) if len(ce) > 1 else 1.0
    note = f"weights from step {data['weights_step']} (the nearest snapshot with weights)"
    if scale_r > 1 or scale_c > 1:
        note += f"; {rows}×{cols} drawn as {len(re)}×{len(ce)} block means ({scale_r:g}×{scale_c:g} per cell)"
    if not data["blockout"]:
        fig = block_heatmaps([("|W|", data["abs_w"], False)], row_scale=scale_r, col_scale=scale_c)
        return fig, note + ". A plain layer (no node sets): |W| in its own order; there is no mask or block order."
    caption = (note + f". Rows (outputs) and columns (inputs) sorted by signature at τ = {tau:.2f}; "
               "lines mark where the signature changes. Cells show block means of |W|, of the expected mask "
               "E[M] and of |W̃| = |W ⊙ E[M]|.")
    nb = len(data["row_boundaries"]) + len(data["col_boundaries"])
    if nb > 300:
        caption += f" {nb} signature boundaries: lines not drawn."
    fig = block_heatmaps(
        [("|W|", data["abs_w"], False), ("expected mask E[M]", data["mask"], False),
         ("|W̃|", data["abs_w_tilde"], False)],
        row_bounds=_drawn_bounds(data["row_boundaries"], re) if nb <= 300 else [],
        col_bounds=_drawn_bounds(data["col_boundaries"], ce) if nb <= 300 else [],
        row_scale=scale_r, col_scale=scale_c)
    return fig, caption
