"""Blockout: learned block-structured (branched) fully connected layers.

Murdock, Li, Zhou & Duerig, "Blockout: Dynamic Model Selection for Hierarchical Deep Networks",
CVPR 2016.
"""

from blockout.clusters import NodeClusters, shared_sampling
from blockout.linear import BlockoutLinear

__version__ = "0.1.0"

__all__ = ["BlockoutLinear", "NodeClusters", "shared_sampling", "__version__"]
