"""Entry point of the Blockout dashboard: ``streamlit run app/Home.py [-- RUN]``.

Draws the shared sidebar (run, snapshot step, threshold τ) on every rerun, then runs the page
chosen in the navigation. The pages live in ``app/views/`` (not ``pages/``: a folder of that
name switches Streamlit, and AppTest, to the older file-based navigation) and only call :mod:`app.cache`
(cached :mod:`analysis` results) and the figure builders of :mod:`app.figures`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/Home.py` puts app/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from analysis.errors import UserError  # noqa: E402
from app import state  # noqa: E402



def _favicon():
    """A small block-diagonal picture drawn here: a ``:material/...:`` page icon would make the
    browser fetch its SVG from fonts.gstatic.com, and the dashboard fetches nothing from the web."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for i, colour in enumerate(("#1f77b4", "#ff7f0e", "#2ca02c")):
        draw.rectangle([2 + 10 * i, 2 + 10 * i, 9 + 10 * i, 9 + 10 * i], fill=colour)
    draw.rectangle([1, 1, 30, 30], outline="#444")
    return img


st.set_page_config(page_title="Blockout", page_icon=_favicon(), layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/branch_tree.py", title="Branch tree", icon=":material/account_tree:"),
    st.Page("views/weight_blocks.py", title="Weight blocks", icon=":material/grid_view:"),
    st.Page("views/emergence.py", title="Emergence", icon=":material/timeline:"),
    st.Page("views/wordnet.py", title="WordNet", icon=":material/menu_book:"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
    st.Page("views/export.py", title="Export", icon=":material/download:"),
]

nav = st.navigation(PAGES)
state.sidebar()
try:
    nav.run()
except UserError as exc:  # a malformed file found while a page reads it: an error box, never a traceback
    st.error(str(exc))
