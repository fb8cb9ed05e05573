"""The networks of the paper's table: a trunk feeding a stack of FC layers and the class layer.

Methods (docs/method.md), by name:

``baseline``      trunk -> linear classifier
``fc``            trunk -> [Linear, ReLU] x depth -> classifier
``dropout``       as ``fc`` with Dropout on the input of every layer after a hidden layer
``soft-learned``  Blockout on every FC layer, classifier included; P used directly, θ trained
``hard-fixed``    Blockout, memberships sampled every pass, θ fixed at its random start
``hard-learned``  Blockout, memberships sampled every pass, θ trained

Blockout node sets: ``trunk -> h1 -> ... -> h<depth> -> classes``; each node set is shared by the
two layers touching it and is sampled once per forward pass (:func:`blockout.shared_sampling`).
The trunk node set belongs to every cluster by default (the shared stem of a hierarchy).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

import blockout as _bo  # the layer API (NodeClusters, BlockoutLinear, shared_sampling)
from blockout.config import ALL_METHODS, BLOCKOUT_METHODS, ModelConfig, RecipeConfig
from blockout.errors import UserError
from blockout.fcstack import FCStack

#: the defaults of :class:`BlockoutNet`'s keywords (one place: :class:`blockout.config.ModelConfig`)
_MODEL = ModelConfig()

#: Membership options of :class:`BlockoutNet` (the emergence options of issue 5; ours) and the
#: paper's defaults (every set Bernoulli, random start P ~ U(0.5, 0.9)), taken from
#: :class:`blockout.config.RecipeConfig`, where every default lives.
MEMBERSHIP_DEFAULTS = {k: getattr(RecipeConfig(), k) for k in (
    "hidden_membership", "class_membership", "membership_m", "membership_init_scale", "membership_init_noise",
    "class_init_noise", "temperature", "theta_init_low", "theta_init_high")}

#: Trunk output sizes are fixed by the trunk; these are the defaults.
CONV_WIDTHS = (16, 32, 64)
CONV_POOL = 2  # adaptive average pool to 2x2 -> 64 * 4 = 256 trunk features
MLP_WIDTH = 256


class ConvTrunk(nn.Module):
    """A small CIFAR-style conv net: [conv3x3, BN, ReLU, maxpool] per width, then avg-pool + flatten.

    Input ``(B, C, H, W)``, output ``(B, widths[-1] * pool * pool)``.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = CONV_WIDTHS, pool: int = CONV_POOL) -> None:
        super().__init__()
        if in_channels < 1 or not widths or any(w < 1 for w in widths) or pool < 1:
            raise ValueError(f"bad conv trunk: in_channels={in_channels!r}, widths={widths!r}, pool={pool!r}")
        blocks: list[nn.Module] = []
        c = in_channels
        for w in widths:
            # max-pool before ReLU: the same function (ReLU is monotone, so it commutes with max) on a
            # quarter of the elements; the parameters keep their indices in ``net``
            blocks += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.MaxPool2d(2),
                       nn.ReLU(inplace=True)]
            c = w
        blocks += [nn.AdaptiveAvgPool2d(pool), nn.Flatten()]
        self.net = nn.Sequential(*blocks)
        self.widths, self.pool = tuple(widths), pool
        self.out_features = widths[-1] * pool * pool
        # channels-last (NHWC) convolutions run about 1.4x faster on CPU (oneDNN) and suit tensor cores
        self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out_features)
        return self.net(x.contiguous(memory_format=torch.channels_last))

    def extra_repr(self) -> str:
        return f"widths={self.widths}, pool={self.pool}, out_features={self.out_features}"


class MLPTrunk(nn.Module):
    """Flatten, then one hidden layer with ReLU: ``(B, *shape) -> (B, width)``."""

    def __init__(self, in_features: int, width: int = MLP_WIDTH) -> None:
        super().__init__()
        if in_features < 1 or width < 1:
            raise ValueError(f"bad MLP trunk: in_features={in_features!r}, width={width!r}")
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(inplace=True))
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class IdentityTrunk(nn.Module):
    """No feature extractor (vector data): flatten only."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"bad identity trunk: in_features={in_features!r}")
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}"


def resolve_trunk(kind: str, input_shape: Sequence[int]) -> str:
    """``auto`` -> ``conv`` for ``(C, H, W)`` inputs, ``identity`` for vectors.

    >>> resolve_trunk("auto", (3, 32, 32)), resolve_trunk("auto", (64,)), resolve_trunk("mlp", (64,))
    ('conv', 'identity', 'mlp')
    """
    shape = tuple(int(s) for s in input_shape)
    if kind == "auto":
        return "conv" if len(shape) == 3 else "identity"
    if kind == "conv" and len(shape) != 3:
        raise UserError(f"trunk=conv needs image inputs (C, H, W), the dataset gives shape {list(shape)}")
    if kind not in ("conv", "mlp", "identity"):
        raise UserError(f"trunk={kind!r} is not one of auto, conv, mlp, identity")
    return kind


def build_trunk(kind: str, input_shape: Sequence[int]) -> nn.Module:
    kind = resolve_trunk(kind, input_shape)
    if kind == "conv":
        return ConvTrunk(in_channels=int(input_shape[0]))
    flat = int(math.prod(int(s) for s in input_shape))
    return MLPTrunk(flat) if kind == "mlp" else IdentityTrunk(flat)


def make_node_set(name: str, size: int, clusters: int, learned: bool, *, trunk_clusters: str = "all",
                  options: Mapping[str, Any] = MEMBERSHIP_DEFAULTS) -> nn.Module:
    """The membership parameters of node set ``name`` of the FC stack.

    ``trunk`` (the stack's input) is in every cluster when ``trunk_clusters == "all"``; the class
    set (``classes``) and the hidden sets take their kind from ``options``
    (:data:`MEMBERSHIP_DEFAULTS` keys): Bernoulli (the paper's), categorical or towers (ours).

    >>> make_node_set("h1", 8, 3, learned=True).probs.shape
    torch.Size([8, 3])
    """
    opt = {**MEMBERSHIP_DEFAULTS, **options}
    if name == "trunk" and trunk_clusters == "all":
        return _bo.NodeClusters(size, clusters, trainable=False, init="all", name=name)
    kind = opt["class_membership"] if name == "classes" else (
        "bernoulli" if name == "trunk" else opt["hidden_membership"])
    if kind == "towers":
        return _bo.NodeClusters(size, clusters, trainable=False, init="towers", name=name)
    if kind == "categorical":
        from blockout.membership import CategoricalClusters  # our addition (issue 5)

        if name == "classes":  # one cluster per class, near-uniform start
            return CategoricalClusters(size, clusters, m=1, trainable=learned, init_scale=0.0,
                                       init_noise=float(opt["class_init_noise"]),
                                       temperature=float(opt["temperature"]), name=name)
        return CategoricalClusters(size, clusters, m=int(opt["membership_m"]), trainable=learned,
                                   init_scale=float(opt["membership_init_scale"]),
                                   init_noise=float(opt["membership_init_noise"]),
                                   temperature=float(opt["temperature"]), name=name)
    if kind != "bernoulli":
        raise UserError(f"unknown membership kind {kind!r} for node set {name!r}")
    return _bo.NodeClusters(size, clusters, trainable=learned, init="random", name=name,
                            init_range=(float(opt["theta_init_low"]), float(opt["theta_init_high"])))


def build_fc_stack(method: str, sizes: Sequence[int], set_names: Sequence[str], layer_names: Sequence[str], *,
                   mask: str, mask_scale: float, dropout: float,
                   make_set: Callable[[str, int, bool], nn.Module]
                   ) -> tuple[nn.ModuleDict, nn.ModuleDict, nn.ModuleDict]:
    """The FC stack of ``method``: ``(node_sets, layers, dropouts)`` as module dicts.

    Shared by :class:`BlockoutNet` and :class:`blockout.head.BlockoutHead`. ``sizes`` and
    ``set_names`` list the node sets (input first, classes last), ``layer_names`` the layers
    between them. Blockout methods get one node set per size (``make_set(name, size, learned)``,
    all created before the first layer, in order) and a :class:`~blockout.BlockoutLinear` per
    layer sharing them; the other methods get ``nn.Linear`` layers, and ``dropout`` (> 0) on the
    input of every layer fed by a hidden layer.

    >>> sets, layers, drops = build_fc_stack("fc", [4, 3, 2], ["trunk", "h1", "classes"], ["fc1", "classifier"],
    ...                                      mask="count", mask_scale=1.0, dropout=0.0, make_set=None)
    >>> len(sets), [type(m).__name__ for m in layers.values()], len(drops)
    (0, ['Linear', 'Linear'], 0)
    """
    node_sets, fc, drop = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
    if method in BLOCKOUT_METHODS:
        mode = "soft" if method == "soft-learned" else "hard"
        learned = method != "hard-fixed"
        for name, size in zip(set_names, sizes):
            node_sets[name] = make_set(name, size, learned)
        for i, lname in enumerate(layer_names):
            fc[lname] = _bo.BlockoutLinear(node_sets[set_names[i]], node_sets[set_names[i + 1]],
                                           bias=True, mode=mode, mask=mask, scale=mask_scale)
    else:
        for i, lname in enumerate(layer_names):
            fc[lname] = nn.Linear(sizes[i], sizes[i + 1])
            if dropout > 0 and i > 0:
                # Dropout on the inputs of every layer fed by a hidden layer (the trunk is kept,
                # as Blockout keeps the trunk node set in every cluster)
                drop[lname] = nn.Dropout(dropout)
    return node_sets, fc, drop


class BlockoutNet(FCStack):
    """Trunk + FC stack + classifier for one of the paper's methods.

    Parameters
    ----------
    method : str
        One of :data:`blockout.config.METHODS`.
    input_shape : sequence of int
        Shape of one input, e.g. ``(3, 32, 32)``.
    num_classes : int
        Number of classes (the last node set).
    nodes, depth : int
        Width and number of hidden FC layers (``baseline`` has none).
    clusters : int
        k, for the Blockout methods.
    trunk : str
        ``auto``, ``conv``, ``mlp`` or ``identity``.
    mask : str
        ``count`` or ``union`` (Blockout methods).
    mask_scale : float, optional
        Constant multiplying the mask; None: ``1/k`` for ``count`` (so a node set in every
        cluster gives a plain linear layer and init scale does not grow with k), 1 for ``union``.
    trunk_clusters : str
        ``all`` (trunk node set in every cluster, fixed) or ``learned``.
    dropout : float
        Dropout probability (``dropout`` method).
    memberships : mapping, optional
        Emergence options (ours, not the paper's; :data:`MEMBERSHIP_DEFAULTS` lists the keys and
        the paper's defaults): ``hidden_membership`` (bernoulli, categorical or towers),
        ``class_membership`` (bernoulli or categorical), ``membership_m``,
        ``membership_init_scale``, ``membership_init_noise``, ``class_init_noise``,
        ``temperature``, ``theta_init_low``, ``theta_init_high``.
    """

    def __init__(self, method: str, input_shape: Sequence[int], num_classes: int, *, nodes: int = _MODEL.nodes,
                 depth: int = _MODEL.depth, clusters: int = _MODEL.clusters, trunk: str = _MODEL.trunk,
                 mask: str = _MODEL.mask, mask_scale: float | None = _MODEL.mask_scale,
                 trunk_clusters: str = _MODEL.trunk_clusters, dropout: float = _MODEL.dropout,
                 memberships: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        unknown = sorted(set(memberships or {}) - set(MEMBERSHIP_DEFAULTS))
        if unknown:
            raise UserError(f"unknown membership option(s) {', '.join(unknown)}")
        self.membership_options = {**MEMBERSHIP_DEFAULTS, **(memberships or {})}
        if method not in ALL_METHODS:
            raise UserError(f"method={method!r} is not one of {', '.join(ALL_METHODS)}")
        if num_classes < 2:
            raise UserError(f"a classifier needs at least 2 classes, the dataset has {num_classes!r}")
        if nodes < 1 or depth < 0 or clusters < 1:
            raise UserError(f"bad FC stack: nodes={nodes!r}, depth={depth!r}, clusters={clusters!r}")
        self.method = method
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.trunk_kind = resolve_trunk(trunk, self.input_shape)
        self.depth = 0 if method == "baseline" else int(depth)
        self.nodes = int(nodes)
        self.clusters = int(clusters)
        self.mask = mask
        self.mask_scale = float(mask_scale) if mask_scale is not None else (
            1.0 / self.clusters if mask == "count" else 1.0)
        self.trunk_clusters = trunk_clusters
        self.dropout_p = float(dropout) if method == "dropout" else 0.0
        self.trunk = build_trunk(self.trunk_kind, self.input_shape)

        sizes = [self.trunk.out_features] + [self.nodes] * self.depth + [self.num_classes]
        set_names = ["trunk"] + [f"h{i}" for i in range(1, self.depth + 1)] + ["classes"]
        layer_names = [f"fc{i}" for i in range(1, self.depth + 1)] + ["classifier"]
        self.set_names, self.layer_names, self.set_sizes = set_names, layer_names, sizes

        self.node_sets, self.fc, self.drop = build_fc_stack(
            method, sizes, set_names, layer_names, mask=mask, mask_scale=self.mask_scale, dropout=self.dropout_p,
            make_set=self.make_node_set)

    def make_node_set(self, name: str, size: int, learned: bool) -> nn.Module:
        """The membership parameters of one node set (override to change memberships).

        With the default :data:`MEMBERSHIP_DEFAULTS` every set is the paper's Bernoulli set
        (trunk in every cluster); the emergence options swap in categorical sets or fixed towers.
        """
        return make_node_set(name, size, self.clusters, learned, trunk_clusters=self.trunk_clusters,
                             options=self.membership_options)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *input_shape) -> (B, classes) logits
        return self.forward_stack(self.trunk(x))  # trunk: (B, trunk features)

    def extra_repr(self) -> str:
        return (f"method={self.method!r}, trunk={self.trunk_kind!r}, nodes={self.nodes}, depth={self.depth}, "
                f"clusters={self.clusters}, classes={self.num_classes}" + (", plain=True" if self.plain else "")
                + (f", mask_blend={self.mask_blend:.3g}" if self.mask_blend else ""))

    # ------------------------------------------------------------------ introspection
    def topology(self) -> dict[str, Any]:
        """The ``topology`` object of ``run.json`` (see :mod:`analysis.runfolder`)."""
        node_sets = []
        if self.is_blockout:
            roles = {"trunk": "trunk", "classes": "classes"}
            for name, size in zip(self.set_names, self.set_sizes):
                ns = self.node_sets[name]
                node_sets.append({
                    "name": name, "size": int(size), "clusters": self.clusters,
                    "trainable": bool(getattr(ns, "trainable", any(p.requires_grad for p in ns.parameters()))),
                    "role": roles.get(name, "hidden"),
                    "membership": getattr(ns, "membership", "bernoulli"),
                    "init": getattr(ns, "init", None),
                })
        layers = []
        last = len(self.layer_names) - 1
        for i, lname in enumerate(self.layer_names):
            layer = self.fc[lname]
            item = {
                "name": lname,
                "in_set": self.set_names[i] if self.is_blockout else None,
                "out_set": self.set_names[i + 1] if self.is_blockout else None,
                "in_features": int(self.set_sizes[i]), "out_features": int(self.set_sizes[i + 1]),
                "mask": getattr(layer, "mask", None) if self.is_blockout else None,
                "mode": getattr(layer, "mode", None) if self.is_blockout else None,
                "mask_scale": self.mask_scale if self.is_blockout else None,
                "role": "classifier" if i == last else "hidden",
            }
            if lname in self.drop:
                item["dropout"] = self.dropout_p
            layers.append(item)
        return {"trunk": {"kind": self.trunk_kind, "out_features": int(self.trunk.out_features)},
                "node_sets": node_sets, "layers": layers}


def build_model(config: Any, input_shape: Sequence[int], num_classes: int, recipes: Any = None) -> BlockoutNet:
    """The model a :class:`~blockout.config.TrainConfig` asks for, with what its recipes attach.

    ``recipes`` (a :class:`blockout.recipes.RecipeList`; default: :func:`blockout.recipes.build_recipes`
    of ``config``) get their ``on_build`` hook after the model is built and its optional fan-in
    rescale is done (e.g. the budgets' multipliers and the co-clustering's buffers, which are
    saved with the model's ``state_dict``).
    """
    memberships = {k: getattr(config, k) for k in MEMBERSHIP_DEFAULTS}
    model = BlockoutNet(config.method, input_shape, num_classes, nodes=config.nodes, depth=config.depth,
                        clusters=config.clusters, trunk=config.trunk, mask=config.mask,
                        mask_scale=config.mask_scale, trunk_clusters=config.trunk_clusters, dropout=config.dropout,
                        memberships=memberships)
    if config.fanin_init == "on":
        model.fanin_rescale()
    if recipes is None:
        from blockout.recipes import build_recipes

        recipes = build_recipes(config)
    recipes.on_build(model)
    return model
