"""Plotly figure builders over plain arrays and networkx graphs (no Streamlit; tested directly)."""

from app.figures.agreement import agreement_by_depth
from app.figures.common import empty_figure, node_set_color, source_color
from app.figures.curves import SAMPLING_CAPTION, compare_curves, training_curves, training_phases
from app.figures.emergence import (cluster_sizes_over_time, drift_figure, multipliers_figure, prob_animation,
                                    prob_histograms)
from app.figures.heatmaps import MAX_DRAW, block_heatmaps, block_mean, in_block_mass_figure
from app.figures.trees import (barycentre_order, linkage_tree, paths_tree, sankey_figure, sunburst_figure,
                               tanglegram, tanglegram_orders, tree_figure, tree_layout, tree_root)

__all__ = [
    "MAX_DRAW", "agreement_by_depth", "block_heatmaps", "block_mean", "cluster_sizes_over_time", "compare_curves",
    "drift_figure", "empty_figure", "in_block_mass_figure", "linkage_tree", "multipliers_figure", "paths_tree",
    "prob_animation", "prob_histograms", "sankey_figure", "sunburst_figure", "tanglegram", "training_curves",
    "tree_figure", "tree_layout", "tree_root", "training_phases", "SAMPLING_CAPTION", "node_set_color",
    "source_color", "tanglegram_orders", "barycentre_order",
]
