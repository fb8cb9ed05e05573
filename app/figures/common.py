"""Small helpers shared by the figure builders: empty-figure placeholders, hover text, colours."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import plotly.express as px

#: A qualitative palette long enough for 20 clusters before repeating.
PALETTE = px.colors.qualitative.Dark24


def color(i: int) -> str:
    """The ``i``-th palette colour (cycling).

    >>> color(0) == color(len(PALETTE))
    True
    """
    return PALETTE[int(i) % len(PALETTE)]


def empty_figure(message: str, height: int = 260) -> go.Figure:
    """A blank figure that says why it is blank (instead of an empty axis)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def short_list(items: Sequence[str], limit: int = 12) -> str:
    """Comma-joined names, cut after ``limit`` with a count of the rest.

    >>> short_list(["a", "b", "c"], limit=2)
    'a, b, … (1 more)'
    """
    items = [str(x) for x in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", … ({len(items) - limit} more)"


def wrap_hover(lines: Sequence[str]) -> str:
    """Join hover lines with ``<br>`` (plotly's line break)."""
    return "<br>".join(str(x) for x in lines if x)
