"""Small helpers shared by the figure builders: empty-figure placeholders, hover text, colours.

Colours that mean something are fixed here once, so a thing has the same colour on every page
and in the exported report: :func:`node_set_color` (trunk, h1, h2, …, classes),
:func:`source_color` (the membership and the weight-induced hierarchies) and :data:`SERIES_COLORS`
(test and train curves). :func:`color` is for things without an identity of their own (clusters,
reference groups), numbered per figure.
"""

from __future__ import annotations

import re
import zlib
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


#: Fixed colours of the node sets every Blockout network has (first and last).
NODE_SET_COLORS = {"trunk": "#7f7f7f", "classes": "#d62728"}
#: Colours of the hidden node sets h1, h2, … in order (none of them grey or red).
HIDDEN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
#: The class hierarchies compared with the references.
SOURCE_COLORS = {"memberships": "#1f77b4", "weights": "#ff7f0e"}
#: Training curves: test solid and train dotted share nothing with node-set colours by design.
SERIES_COLORS = {"test": "#222222", "train": "#17a2b8"}


def node_set_color(name: str) -> str:
    """The one colour of node set ``name`` on every page.

    ``trunk`` and ``classes`` have fixed colours, ``h<i>`` the i-th hidden colour; any other name
    gets a hidden colour chosen from a hash of the name (stable across runs and processes).

    >>> node_set_color("h1"), node_set_color("h2"), node_set_color("classes")
    ('#1f77b4', '#ff7f0e', '#d62728')
    >>> node_set_color("custom") == node_set_color("custom")
    True
    """
    name = str(name)
    if name in NODE_SET_COLORS:
        return NODE_SET_COLORS[name]
    m = re.fullmatch(r"h(\d+)", name)
    if m:
        return HIDDEN_COLORS[(int(m.group(1)) - 1) % len(HIDDEN_COLORS)]
    return HIDDEN_COLORS[zlib.crc32(name.encode()) % len(HIDDEN_COLORS)]


def source_color(source: str) -> str:
    """Colour of a class hierarchy's source (``memberships`` or ``weights``).

    >>> source_color("weights")
    '#ff7f0e'
    """
    return SOURCE_COLORS.get(str(source), color(zlib.crc32(str(source).encode())))


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
