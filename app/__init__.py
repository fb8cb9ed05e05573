"""The Blockout dashboard (Streamlit + plotly): thin pages over :mod:`analysis` and the figure
builders in :mod:`app.figures` (plain functions, testable without Streamlit).

Start it with ``streamlit run app/Home.py [-- RUN]`` or ``blockout dashboard [RUN]``.
"""
