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

The names are imported on first use (PEP 562): ``import blockout`` alone does not import torch,
so commands that never touch a network (``blockout --help``, ``inspect``, ``dashboard``) start
without paying for it.

>>> import torch
>>> from blockout import BlockoutHead
>>> BlockoutHead(32, 10, hidden=(64,), clusters=4)(torch.randn(2, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "NodeClusters": "blockout.clusters",
    "shared_sampling": "blockout.clusters",
    "BlockoutLinear": "blockout.linear",
    "BlockoutHead": "blockout.head",
    "RunLogger": "blockout.logger",
}

__all__ = ["BlockoutHead", "BlockoutLinear", "NodeClusters", "RunLogger", "shared_sampling", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below does the import
    from blockout.clusters import NodeClusters, shared_sampling
    from blockout.head import BlockoutHead
    from blockout.linear import BlockoutLinear
    from blockout.logger import RunLogger


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
