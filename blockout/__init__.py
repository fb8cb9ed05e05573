"""Blockout: learned block-structured (branched) fully connected layers.

Murdock, Li, Zhou & Duerig, "Blockout: Dynamic Model Selection for Hierarchical Deep Networks",
CVPR 2016.

The public API:

* the layer: :class:`NodeClusters` (memberships of one node set), :class:`BlockoutLinear` (a
  linear layer masked by two node sets) and :func:`shared_sampling`;
* :class:`BlockoutHead`: the paper's FC stack as a drop-in classifier head for any backbone;
* :class:`RunLogger`: writes the run folder that ``blockout inspect``, ``blockout compare`` and
  the dashboard open, from any training loop (``blockout.lightning.BlockoutCallback`` does the
  same from PyTorch Lightning's ``Trainer.fit``; ``pip install blockout[lightning]``).

>>> import torch
>>> from blockout import BlockoutHead
>>> BlockoutHead(32, 10, hidden=(64,), clusters=4)(torch.randn(2, 32)).shape
torch.Size([2, 10])
"""

from blockout.clusters import NodeClusters, shared_sampling
from blockout.linear import BlockoutLinear

__version__ = "0.1.0"

from blockout.head import BlockoutHead  # noqa: E402 (needs the layer API above)
from blockout.logger import RunLogger  # noqa: E402

__all__ = ["BlockoutHead", "BlockoutLinear", "NodeClusters", "RunLogger", "shared_sampling", "__version__"]
