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

st.set_page_config(page_title="Blockout", page_icon=":material/grid_view:", layout="wide")

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
