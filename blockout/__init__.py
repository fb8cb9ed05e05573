"""Blockout: learned block-structured (branched) fully connected layers.

Murdock, Li, Zhou & Duerig, "Blockout: Dynamic Model Selection for Hierarchical Deep Networks",
CVPR 2016.
"""

__version__ = "0.1.0"
