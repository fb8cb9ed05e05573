"""Entry point of the Blockout dashboard: ``streamlit run app/Home.py [-- RUN]``.

Draws the shared sidebar (run, snapshot step, threshold τ) on every rerun, then runs the page
chosen in the navigation. The pages live in ``app/pages/`` and only call :mod:`app.cache`
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

from app import state  # noqa: E402

st.set_page_config(page_title="Blockout", page_icon="🧱", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="📋", default=True),
    st.Page("pages/branch_tree.py", title="Branch tree", icon="🌳"),
    st.Page("pages/weight_blocks.py", title="Weight blocks", icon="🧱"),
    st.Page("pages/emergence.py", title="Emergence", icon="⏱️"),
    st.Page("pages/wordnet.py", title="WordNet", icon="📚"),
    st.Page("pages/compare.py", title="Compare runs", icon="⚖️"),
    st.Page("pages/export.py", title="Export", icon="💾"),
]

nav = st.navigation(PAGES)
state.sidebar()
nav.run()
