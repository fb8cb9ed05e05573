"""Hierarchy analysis of Blockout runs: numpy, scipy and networkx only (no torch).

Reads run folders (see :mod:`analysis.runformat`), thresholds cluster probability matrices into
branch trees, orders weights into block-structured heatmaps and compares the emerged class
hierarchies to WordNet groupings with permutation nulls.
"""
