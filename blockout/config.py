"""Every training option, nested by concern, each default in one place.

:class:`TrainConfig` is the single source of truth for ``blockout train``. It holds five sections,
one dataclass each, where every option has its default, its ``--help`` text and (for an
enumeration) its choices:

``data``    :class:`DataConfig`    what to train on
``model``   :class:`ModelConfig`   the paper's network and method
``optim``   :class:`OptimConfig`   optimiser, schedule and epochs
``run``     :class:`RunConfig`     seeds, device, output folder
``recipe``  :class:`RecipeConfig`  our emergence options (not the paper's; the recipes of
                                   :mod:`blockout.recipes` read them)

Option names are unique across the sections, so every option also has one flat name: the command
line generates one flag per option (``--samples-per-class`` for ``data.samples_per_class``),
``config.samples_per_class`` reads it, and ``run.json`` and ``train_state.pt`` store the flat dict
(:meth:`TrainConfig.to_dict`; :meth:`TrainConfig.to_nested` gives the nested one). Both forms load
(:meth:`TrainConfig.from_dict`, :func:`flat_config`). To add an option, add a field to its section
with a ``help`` in its metadata (and ``choices`` when it is an enumeration) and, if needed, a check
in :meth:`TrainConfig.validate`; the flag follows.

Presets are constructors: :meth:`TrainConfig.demo`, :meth:`TrainConfig.hard_budgeted`,
:meth:`TrainConfig.hard_cocluster`; the recipe presets' values that depend on other options are
typed (:class:`EpochShare`, :class:`PerCluster`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from analysis.runfolder import read_json
from blockout.errors import UserError

#: The paper's six methods (docs/method.md), in the order of its table.
METHODS = ("baseline", "fc", "dropout", "soft-learned", "hard-fixed", "hard-learned")
#: Our named recipes for making a hierarchy emerge (issue 5; not the paper's): a method name that
#: fills in the emergence options of :data:`METHOD_PRESETS` for every key the user did not give.
RECIPES = ("hard-budgeted", "hard-cocluster")
#: Every accepted ``--method``.
ALL_METHODS = METHODS + RECIPES
#: Methods whose FC layers are Blockout layers.
BLOCKOUT_METHODS = ("soft-learned", "hard-fixed", "hard-learned") + RECIPES


def _opt(default: Any, help: str, choices: tuple | None = None, **extra: Any) -> Any:
    """A dataclass field carrying its command-line help (and choices) as metadata."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    meta.update(extra)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------
# the sections


@dataclass
class DataConfig:
    """What to train on."""

    dataset: str = _opt("synthetic", "dataset name: synthetic (built in), cifar10, cifar100, fashion-mnist, mnist "
                        "(IDX files), imagefolder", metavar="NAME")
    data_dir: str | None = _opt(None, "folder holding the dataset files (cifar10/cifar100/mnist/imagefolder; "
                                "fashion-mnist defaults to Debian's /usr/share/datasets/fashion-mnist)",
                                 metavar="DIR")
    hierarchy: str | None = _opt(None, "JSON class hierarchy for the synthetic dataset ({group: [classes]})",
                                  metavar="FILE")
    samples_per_class: int | None = _opt(None, "training images per class (synthetic: generated; real data: a "
                                                "seeded, stratified subsample; default: the dataset's)")
    test_samples_per_class: int | None = _opt(None, "test images per class (synthetic: generated; real data: a "
                                                     "seeded, stratified subsample; default: the dataset's)")
    image_size: int = _opt(32, "image side length in pixels (synthetic and imagefolder)")
    augment: str = _opt("auto", "training augmentation on whole batches: crop = random crop after padding "
                        "(4 px for 32x32, 2 px for 28x28), crop-flip = also a random horizontal flip; auto = "
                        "crop-flip for cifar10/cifar100/fashion-mnist/imagefolder, crop for mnist (digits are "
                        "not mirrored), none for synthetic", ("auto", "none", "crop", "crop-flip"))
    data_seed: int = _opt(0, "seed of the synthetic data (kept apart from --seed so seeds share one dataset)")


@dataclass
class ModelConfig:
    """The network: the paper's method and its FC stack."""

    method: str = _opt("hard-learned", "the paper's method, or one of our emergence recipes (hard-budgeted, "
                       "hard-cocluster: docs/emergence.md), which fills in the emergence options you do not give", ALL_METHODS)
    clusters: int = _opt(6, "number of clusters k (Blockout methods)")
    nodes: int = _opt(512, "width of each hidden FC layer")
    depth: int = _opt(2, "number of hidden FC layers (0 = trunk straight into the classifier)")
    trunk: str = _opt("auto", "feature extractor: conv (images), mlp, identity (vectors); auto picks by input shape",
                      ("auto", "conv", "mlp", "identity"))
    mask: str = _opt("count", "Blockout mask: count = C_out C_in^T (the paper's), union = min(1, C_out C_in^T)",
                     ("count", "union"))
    mask_scale: float | None = _opt(None, "constant multiplying the Blockout mask; default 1/k for count "
                                          "(full membership = a plain layer), 1 for union")
    trunk_clusters: str = _opt("all", "trunk node set: all = in every cluster (shared stem), learned = own memberships",
                               ("all", "learned"))
    dropout: float = _opt(0.5, "dropout probability of the dropout method")


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and length of training."""

    epochs: int = _opt(10, "training epochs")
    batch_size: int = _opt(128, "batch size (per process under torchrun)")
    optimizer: str = _opt("adam", "optimiser", ("sgd", "adam", "adamw"))
    lr: float = _opt(1e-3, "learning rate of the weights")
    momentum: float = _opt(0.9, "SGD momentum (sgd only)")
    weight_decay: float = _opt(5e-4, "weight decay of weight matrices (theta, biases and norms get none)")
    theta_lr_mult: float = _opt(10.0, "learning-rate multiplier of the cluster memberships theta")
    lr_schedule: str = _opt("cosine", "learning-rate schedule over all steps", ("cosine", "constant"))
    warmup_steps: int = _opt(0, "linear learning-rate warm-up steps")


@dataclass
class RunConfig:
    """Seeds, device and output."""

    seed: int = _opt(0, "random seed (data order, initialisation, sampling)")
    device: str = _opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N", metavar="DEVICE")
    amp: str = _opt("auto", "mixed precision: auto = on for CUDA", ("auto", "on", "off"))
    out: str | None = _opt(None, "run folder to create (default: checkpoints/<dataset>-<method>-s<seed>)",
                            metavar="DIR")
    snapshot_every: int | None = _opt(None, "steps between P snapshots (default: about 30 per run)")
    num_workers: int = _opt(0, "data-loader worker processes")


@dataclass
class RecipeConfig:
    """Our emergence options (ours, not the paper's: issue 5, docs/emergence.md).

    Membership kinds and their starts shape the model (:func:`blockout.models.build_model`); the
    rest drive the recipe plug-ins that :func:`blockout.recipes.build_recipes` picks.
    """

    hidden_membership: str = _opt("bernoulli", "memberships of hidden node sets: bernoulli (the paper's), categorical "
                                  "(each node in exactly --membership-m clusters, Gumbel top-m; ours) or towers "
                                  "(node i fixed in cluster i mod k; ours)", ("bernoulli", "categorical", "towers"))
    class_membership: str = _opt("bernoulli", "memberships of the class node set: bernoulli (the paper's) or "
                                 "categorical (each class in exactly one cluster, Gumbel straight-through; ours)",
                                 ("bernoulli", "categorical"))
    membership_m: int = _opt(1, "clusters per hidden node with --hidden-membership categorical")
    membership_init_scale: float = _opt(3.0, "categorical hidden memberships start at scale * onehot(i mod k) "
                                        "+ N(0, noise)")
    membership_init_noise: float = _opt(3.0, "standard deviation of the noise of the categorical hidden start")
    class_init_noise: float = _opt(0.1, "categorical class memberships start at N(0, noise) logits (near uniform)")
    temperature: float = _opt(1.0, "softmax / Gumbel temperature of categorical memberships")
    temperature_end: float | None = _opt(None, "anneal the temperature geometrically to this value over the "
                                         "membership-learning phase (null: constant)")
    usage_weight: float = _opt(1.0, "weight of the usage balancing KL(mean usage || uniform) of each categorical "
                               "hidden node set")
    class_usage_weight: float = _opt(0.0, "weight of the same usage balancing on a categorical class node set")
    theta_init_low: float = _opt(0.5, "random Bernoulli memberships start with P ~ U(low, high)")
    theta_init_high: float = _opt(0.9, "upper end of the random Bernoulli start")
    fanin_init: str = _opt("off", "rescale each Blockout layer's initial weights by 1/sqrt(expected live density), "
                           "so that sparse masks do not shrink the signal (ours)", ("off", "on"))
    membership_warmup: int = _opt(0, "epochs before theta starts training: the weights learn first with the "
                                  "memberships held at their start")
    soft_epochs: int = _opt(0, "train the first N epochs with the expected memberships (soft, deterministic) "
                            "before hard sampling starts (hard methods only)")
    budget_rho: float | None = _opt(None, "connection budget: expected live-connection density <= rho per "
                                    "constrained row (null: no budget)")
    budget_layers: str = _opt("classifier", "layers under the budget: the class layer, or every layer with "
                              "learned output memberships", ("classifier", "all"))
    budget_scope: str = _opt("row", "one Lagrange multiplier per row (e.g. per class) or per layer", ("row", "layer"))
    budget_step: float = _opt(0.05, "dual-ascent step of the budget multipliers (per unit of violation per step)")
    budget_max_step: float = _opt(0.01, "largest change of a budget multiplier in one step")
    budget_anneal_start: float = _opt(0.0, "share of the membership-learning phase after which the budget starts "
                                      "to shrink from 1 to rho")
    budget_anneal_end: float = _opt(0.0, "share of the membership-learning phase at which the budget reaches rho "
                                    "(equal to the start: no annealing)")
    freeze_after: int | None = _opt(None, "freeze the memberships after this many epochs (categorical: the m most "
                                    "probable clusters; Bernoulli: P >= 0.5) and fine-tune the weights for the rest")
    cocluster_at: int | None = _opt(None, "co-clustered warm start (ours): for this many epochs the Blockout "
                                    "layers act as plain FC layers (theta untrained); then every membership is set "
                                    "from a co-clustering of the class layer (--cocluster-method, "
                                    "--cocluster-source) (null: off)")
    cocluster_anneal_epochs: int = _opt(0, "after the co-clustering, fade the mask in over this many epochs: each "
                                        "Blockout layer uses W * (a + (1 - a) M) with a falling linearly from 1 to 0 "
                                        "per step (0: the one-step switch)")
    cocluster_method: str = _opt("spectral", "how the class layer is clustered: spectral co-clustering of |W| "
                                 "(Dhillon), balanced k-means of the signed class weight rows, or linkage = the "
                                 "average-linkage (cosine) dendrogram of those rows cut into k unequal groups with "
                                 "hidden nodes shared in proportion to the groups' sizes; hidden nodes then "
                                 "assigned to the class clusters; nested = that dendrogram cut twice (k fine "
                                 "groups and --cocluster-coarse coarse ones): classes and the last hidden layer's "
                                 "nodes in one fine cluster each, every earlier hidden node in all the fine clusters "
                                 "of one coarse group, so branches split again (needs --depth 2 or more; hidden "
                                 "memberships Bernoulli)", ("spectral", "signed", "linkage", "nested"))
    cocluster_coarse: int | None = _opt(None, "with --cocluster-method nested: the number of coarse groups, 2 to "
                                        "clusters-1 (fewer or more leave one level of branches; null: chosen from "
                                        "the class dendrogram, the widest gap between its merge heights among cuts "
                                        "into 2 to clusters-1 groups)")
    cocluster_k: str = _opt("given", "number of class groups of the linkage co-clustering (fine groups of the "
                            "nested one): given = --clusters; "
                            "gap / silhouette = read off the class dendrogram (largest gap between merge heights / "
                            "best mean silhouette), at most --clusters (nested with --cocluster-coarse N: at least N + 1), "
                            "the unused clusters left empty (dead); "
                            "auto = the rule that measured best on that dendrogram (silhouette on the weights, gap "
                            "on the confusion)", ("given", "auto", "gap", "silhouette"))
    cocluster_source: str = _opt("weights", "what the linkage / nested co-clustering groups the classes by: the "
                                 "class weight rows (cosine), or confusion = the soft confusion matrix of the warm-up "
                                 "network over the training batches of the last warm-up epoch (classes mixed up "
                                 "together group together; average linkage on 1 - symmetric confusion / its "
                                 "maximum); the hidden nodes are assigned from the weights either way; --method "
                                 "hard-cocluster picks confusion with linkage or nested", ("weights", "confusion"))
    cocluster_scale: float = _opt(5.0, "categorical logits after the co-clustering: scale * onehot(cluster)")
    cocluster_class_high: float = _opt(0.9, "Bernoulli P of a node in its co-clustered cluster")
    cocluster_class_low: float = _opt(0.1, "Bernoulli P of a node in the other clusters after the co-clustering")
    cocluster_rescale: str = _opt("rownorm", "at the co-clustering, rescale each weight row so that its masked "
                                  "norm (expected mask) equals its plain norm, or leave the weights", ("rownorm", "none"))
    rescue_dead: str = _opt("on", "when freezing, give a node with no cluster (a dead class) its most probable "
                            "cluster", ("on", "off"))


#: ``(section name, section class)`` in the order of the flat option list.
SECTIONS: tuple[tuple[str, type], ...] = (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig),
                                          ("run", RunConfig), ("recipe", RecipeConfig))
SECTION_NAMES = tuple(name for name, _ in SECTIONS)
#: flat option name -> its section
FIELD_SECTION: dict[str, str] = {f.name: name for name, cls in SECTIONS for f in dataclasses.fields(cls)}


def flat_config(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """The flat option dict of a nested (``{"data": {...}, "model": {...}, ...}``) or flat config.

    Flat keys pass through unchanged (so a flat config, e.g. every ``run.json`` written so far,
    comes back as it was); an option given both flat and in its section with different values is
    ambiguous and refused (flags override a config file elsewhere, after this). A section's keys
    must be options of that section. Unknown flat keys are left for the caller to judge.
    Torch-free: readers of run folders use it.

    >>> flat_config({"model": {"method": "fc"}, "optim": {"epochs": 3}, "seed": 1})
    {'method': 'fc', 'epochs': 3, 'seed': 1}
    >>> flat_config({"method": "fc", "epochs": 3})
    {'method': 'fc', 'epochs': 3}
    >>> flat_config({"optim": {"epochs": 3}, "epochs": 3})
    {'epochs': 3}
    >>> flat_config({"optim": {"epochs": 3}, "epochs": 5})
    Traceback (most recent call last):
    ...
    analysis.errors.UserError: config: option 'epochs' is given twice with different values (5 and 3 in section 'optim')
    """
    if not isinstance(data, Mapping):
        raise UserError(f"{source} must hold a JSON object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SECTION_NAMES:
            continue
        if not isinstance(value, Mapping):
            raise UserError(f"{source}: section {key!r} must be a JSON object, got {type(value).__name__}")
        wrong = sorted(k for k in value if FIELD_SECTION.get(k) != key)
        if wrong:
            raise UserError(f"{source}: unknown option(s) {', '.join(map(str, wrong))} in section {key!r} "
                            f"(known: {', '.join(k for k, s in FIELD_SECTION.items() if s == key)})")
        out.update(value)
    for key, value in data.items():
        if key in SECTION_NAMES:
            continue
        if key in out and out[key] != value:
            raise UserError(f"{source}: option {key!r} is given twice with different values "
                            f"({value!r:.40} and {out[key]!r:.40} in section {FIELD_SECTION[key]!r})")
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------
# presets


@dataclass(frozen=True)
class EpochShare:
    """A number of epochs given as a share of the run's epochs, at least 1.

    >>> EpochShare(1, 2).of(30), EpochShare(1, 3).of(2), EpochShare(2, 3).of(10)
    (15, 1, 6)
    """

    num: int
    den: int

    def of(self, epochs: int) -> int:
        return max(1, (self.num * int(epochs)) // self.den)


@dataclass(frozen=True)
class PerCluster:
    """A value divided by the number of clusters k (``PerCluster()`` is the density 1/k).

    >>> PerCluster().of(20)
    0.05
    """

    value: float = 1.0

    def of(self, clusters: int) -> float:
        return self.value / int(clusters)


@dataclass(frozen=True)
class PerCoclusterMethod:
    """A value that depends on ``cocluster_method``: ``default``, or the value ``by_method`` gives it.

    >>> v = PerCoclusterMethod("weights", (("linkage", "confusion"), ("nested", "confusion")))
    >>> v.of("signed"), v.of("nested")
    ('weights', 'confusion')
    """

    default: Any
    by_method: tuple[tuple[str, Any], ...] = ()

    def of(self, method: str) -> Any:
        return dict(self.by_method).get(method, self.default)


#: nested hidden nodes sit in several clusters (m > 1): Bernoulli memberships with the nested method
_HIDDEN_FOR_NESTED = (("nested", "bernoulli"),)

#: Option values of each recipe (docs/emergence.md explains them; explicit options win). Values
#: that depend on other options are typed: :class:`PerCluster` (of ``clusters``),
#: :class:`EpochShare` (of ``epochs``) and :class:`PerCoclusterMethod` (of ``cocluster_method``).
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    # the prototype study's recipe (docs/method.md), reproduced in the real trainer: union mask, every hidden node in
    # exactly one cluster (hard Gumbel, noisy-tower start, usage balancing), Bernoulli classes under
    # a per-class budget rho = 1/k, then memberships frozen (dead classes rescued) and weights fine-tuned
    "hard-budgeted": {
        "mask": "union", "mask_scale": 1.0, "hidden_membership": PerCoclusterMethod("categorical", _HIDDEN_FOR_NESTED),
        "membership_m": 1, "membership_init_scale": 3.0, "membership_init_noise": 3.0, "usage_weight": 1.0,
        "class_membership": "bernoulli", "budget_rho": PerCluster(), "budget_layers": "classifier",
        "budget_scope": "row", "budget_step": 0.05, "budget_max_step": 0.01, "freeze_after": EpochShare(1, 2),
        "rescue_dead": "on", "theta_lr_mult": 10.0, "fanin_init": "on",
    },
    # the co-clustered warm start: a plain FC net for the first third of the epochs, then every
    # membership set in one step from a balanced spectral co-clustering of the weights
    # (blockout/cocluster.py; sharp: logits 8 * onehot, class P 0.95 / 0.01, no rescale, which measured
    # better than 3-5 / 0.9 / 0.1 / row-norm rescale), then Blockout training of theta (hard sampling,
    # one cluster per hidden node) to the end. Round 4 (docs/emergence.md): off-branch class P 0.15,
    # not 0.01, and no freeze, so off-branch connections survive at a reduced rate: +23 points of
    # accuracy at the same membership ARI (round 3: class P 0.01, frozen at two thirds)
    "hard-cocluster": {
        "mask": "union", "mask_scale": 1.0, "hidden_membership": PerCoclusterMethod("categorical", _HIDDEN_FOR_NESTED),
        "membership_m": 1, "membership_init_scale": 0.0, "membership_init_noise": 0.0, "usage_weight": 1.0,
        "class_membership": "bernoulli", "cocluster_at": EpochShare(1, 3), "freeze_after": None, "rescue_dead": "on",
        "cocluster_method": "signed", "cocluster_scale": 8.0, "cocluster_class_high": 0.95,
        "cocluster_class_low": 0.15, "cocluster_rescale": "none", "theta_lr_mult": 10.0,
        # with the dendrogram methods (linkage, nested) the classes are grouped by the warm-up network's
        # soft confusion matrix: round 5 measured its memberships above the weight rows' on every
        # unbalanced planted seed and at the fine level of every two-level seed, at about the same
        # accuracy (docs/emergence.md)
        "cocluster_source": PerCoclusterMethod("weights", (("linkage", "confusion"), ("nested", "confusion"))),
    },
}


def _resolve_preset(preset: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Preset values for the keys ``data`` lacks, with the typed values worked out.

    >>> _resolve_preset({"budget_rho": PerCluster(), "freeze_after": EpochShare(1, 2)}, {"clusters": 20, "epochs": 30})
    {'budget_rho': 0.05, 'freeze_after': 15}
    >>> _resolve_preset({"cocluster_source": PerCoclusterMethod("weights", (("nested", "confusion"),))},
    ...                 {"cocluster_method": "nested"})
    {'cocluster_source': 'confusion'}
    """
    k = int(data.get("clusters", _DEFAULTS["clusters"]))
    epochs = int(data.get("epochs", _DEFAULTS["epochs"]))
    method = data.get("cocluster_method", preset.get("cocluster_method", _DEFAULTS["cocluster_method"]))
    out = {}
    for key, value in preset.items():
        if key in data:
            continue
        if isinstance(value, PerCluster):
            value = value.of(k)
        elif isinstance(value, EpochShare):
            value = value.of(epochs)
        elif isinstance(value, PerCoclusterMethod):
            value = value.of(method)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------
# the whole config


@dataclass(init=False)
class TrainConfig:
    """All options of one training run, in five sections. Invalid values raise :class:`UserError`.

    Build it from sections, from flat options, or both (flat options win); read an option by
    its section (``cfg.optim.epochs``) or by its flat name (``cfg.epochs``).

    >>> cfg = TrainConfig(method="dropout", epochs=3)
    >>> cfg.method, cfg.epochs, cfg.model.depth
    ('dropout', 3, 2)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg == TrainConfig.from_dict(cfg.to_nested())
    True
    >>> TrainConfig(model=ModelConfig(method="fc"), optim=OptimConfig(epochs=2)).replace(epochs=4).optim.epochs
    4
    """

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    run: RunConfig
    recipe: RecipeConfig

    # fields that may change when a run is resumed (everything else must match the run)
    RESUMABLE_CHANGES: typing.ClassVar[tuple[str, ...]] = ("epochs", "device", "num_workers", "amp", "out")

    def __init__(self, data: DataConfig | None = None, model: ModelConfig | None = None,
                 optim: OptimConfig | None = None, run: RunConfig | None = None,
                 recipe: RecipeConfig | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(FIELD_SECTION))
        if unknown:
            raise TypeError(f"TrainConfig got unknown option(s) {', '.join(unknown)}")
        given = {"data": data, "model": model, "optim": optim, "run": run, "recipe": recipe}
        for name, cls in SECTIONS:
            section = given[name]
            if section is None:
                section = cls()
            elif not isinstance(section, cls):
                raise TypeError(f"TrainConfig {name}= must be a {cls.__name__}, got {type(section).__name__}")
            # a copy: the config never shares a section with its caller (or with another config)
            mine = {k: v for k, v in options.items() if FIELD_SECTION[k] == name}
            object.__setattr__(self, name, dataclasses.replace(section, **mine))
        self._coerce_types()
        self.validate()

    # flat access: cfg.epochs is cfg.optim.epochs
    def __getattr__(self, name: str) -> Any:
        section = FIELD_SECTION.get(name)
        if section is None or section not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.__dict__[section], name)

    def __setattr__(self, name: str, value: Any) -> None:
        section = FIELD_SECTION.get(name)
        if section is not None:
            setattr(getattr(self, section), name, value)
        else:
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ checks
    def _coerce_types(self) -> None:
        for name, cls in SECTIONS:
            section = getattr(self, name)
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(section):
                setattr(section, f.name, _check_type(f.name, getattr(section, f.name), hints[f.name]))

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first invalid option and its value."""
        for f, _ in self.option_fields():
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                raise UserError(f"{f.name}={value!r} is not one of {', '.join(choices)}")
        for name in ("clusters", "nodes", "epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        _check_sizes(self)
        for name in ("samples_per_class", "test_samples_per_class", "snapshot_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value!r}")
        for name in ("depth", "num_workers", "warmup_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.lr > 0.0 or self.lr != self.lr or self.lr == float("inf"):
            raise UserError(f"lr must be a positive number, got {self.lr!r}")
        if self.mask_scale is not None and not 0.0 < self.mask_scale < float("inf"):
            raise UserError(f"mask_scale must be a positive number, got {self.mask_scale!r}")
        if self.theta_lr_mult < 0.0:
            raise UserError(f"theta_lr_mult must be 0 or more, got {self.theta_lr_mult!r}")
        if self.weight_decay < 0.0:
            raise UserError(f"weight_decay must be 0 or more, got {self.weight_decay!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise UserError(f"momentum must be in [0, 1), got {self.momentum!r}")
        self._validate_emergence()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise UserError(f"device={self.device!r} is not one of auto, cpu, cuda, cuda:N")

    def _validate_emergence(self) -> None:
        if not 1 <= self.membership_m <= self.clusters:
            raise UserError(f"membership_m must be in [1, clusters={self.clusters}], got {self.membership_m!r}")
        for name in ("membership_init_scale", "membership_init_noise", "class_init_noise", "usage_weight",
                     "class_usage_weight"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise UserError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("temperature", "temperature_end"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < float("inf"):
                raise UserError(f"{name} must be a positive number, got {value!r}")
        if not 0.0 < self.theta_init_low <= self.theta_init_high < 1.0:
            raise UserError(f"theta_init_low/high must satisfy 0 < low <= high < 1, got "
                            f"({self.theta_init_low!r}, {self.theta_init_high!r})")
        if self.membership_warmup < 0:
            raise UserError(f"membership_warmup must be 0 or more, got {self.membership_warmup!r}")
        if self.soft_epochs < 0:
            raise UserError(f"soft_epochs must be 0 or more, got {self.soft_epochs!r}")
        if self.budget_rho is not None and not 0.0 < self.budget_rho <= 1.0:
            raise UserError(f"budget_rho must be in (0, 1], got {self.budget_rho!r}")
        for name in ("budget_step", "budget_max_step"):
            if not getattr(self, name) > 0.0:
                raise UserError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("budget_anneal_start", "budget_anneal_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.cocluster_at is not None and self.cocluster_at < 1:
            raise UserError(f"cocluster_at must be at least 1 (or null), got {self.cocluster_at!r}")
        if self.cocluster_at is not None and self.method in BLOCKOUT_METHODS and self.cocluster_at >= self.epochs:
            # the switch happens at the start of epoch cocluster_at + 1: the run would stay a plain network
            raise UserError(f"the co-clustering comes after cocluster_at={self.cocluster_at} epoch(s) of warm-up, so "
                            f"with epochs={self.epochs} it never would: train at least {self.cocluster_at + 1} epochs "
                            "or lower cocluster_at")
        if self.cocluster_anneal_epochs < 0:
            raise UserError(f"cocluster_anneal_epochs must be 0 or more, got {self.cocluster_anneal_epochs!r}")
        if self.cocluster_anneal_epochs and self.cocluster_at is None:
            raise UserError(f"cocluster_anneal_epochs={self.cocluster_anneal_epochs!r} needs cocluster_at "
                            "(the mask fades in after the co-clustering)")
        if self.cocluster_at is None:
            # without the warm start these options would be silently ignored (e.g. --method hard-learned
            # --cocluster-method linkage trained the paper's method as if they were not given)
            unused = [f"{name}={value!r}" for name, value, default in (
                ("cocluster_method", self.cocluster_method, "spectral"), ("cocluster_k", self.cocluster_k, "given"),
                ("cocluster_source", self.cocluster_source, "weights"), ("cocluster_coarse", self.cocluster_coarse, None))
                if value != default]
            if unused:
                raise UserError(f"{', '.join(unused)} act(s) at the co-clustered start: it needs cocluster_at "
                                "(or --method hard-cocluster, which sets it)")
        if self.cocluster_k != "given" and self.cocluster_method not in ("linkage", "nested"):
            raise UserError(f"cocluster_k={self.cocluster_k!r} reads the number of groups off the class dendrogram: "
                            f"it needs cocluster_method 'linkage' (or 'nested'), got {self.cocluster_method!r}")
        if not 0.0 <= self.cocluster_scale < float("inf"):
            raise UserError(f"cocluster_scale must be a finite number >= 0, got {self.cocluster_scale!r}")
        if not 0.0 < self.cocluster_class_low < self.cocluster_class_high < 1.0:
            raise UserError(f"cocluster_class_low/high must satisfy 0 < low < high < 1, got "
                            f"({self.cocluster_class_low!r}, {self.cocluster_class_high!r})")
        if self.cocluster_source != "weights" and self.cocluster_method not in ("linkage", "nested"):
            raise UserError(f"cocluster_source={self.cocluster_source!r} groups the classes by a dendrogram: it needs "
                            f"cocluster_method 'linkage' or 'nested', got {self.cocluster_method!r}")
        if self.cocluster_coarse is not None and not 2 <= self.cocluster_coarse < self.clusters:
            # one coarse group, or one per cluster, is a single level of branches: no second split
            raise UserError(f"cocluster_coarse must be in [2, clusters - 1 = {self.clusters - 1}] (or null) for two "
                            f"levels of branches, got {self.cocluster_coarse!r}")
        if self.cocluster_coarse is not None and self.cocluster_method != "nested":
            raise UserError(f"cocluster_coarse={self.cocluster_coarse!r} needs cocluster_method nested "
                            f"(got {self.cocluster_method!r})")
        if self.cocluster_method == "nested" and self.cocluster_at is not None:
            if self.depth < 2:
                raise UserError("cocluster_method nested needs depth 2 or more (one hidden layer per level of "
                                f"branches), got depth {self.depth}")
            if self.hidden_membership != "bernoulli":
                raise UserError("cocluster_method nested puts hidden nodes in several clusters: it needs "
                                f"hidden_membership bernoulli, got {self.hidden_membership!r}")
        if self.freeze_after is not None and self.freeze_after < 1:
            raise UserError(f"freeze_after must be at least 1 (or null), got {self.freeze_after!r}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict of every option (the form ``run.json`` and ``train_state.pt`` store)."""
        return {f.name: getattr(section, f.name) for section in self.sections() for f in dataclasses.fields(section)}

    def to_nested(self) -> dict[str, dict[str, Any]]:
        """``{"data": {...}, "model": {...}, "optim": {...}, "run": {...}, "recipe": {...}}``."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTION_NAMES}

    def sections(self) -> list[Any]:
        """The five section objects, in :data:`SECTIONS` order."""
        return [getattr(self, name) for name in SECTION_NAMES]

    @classmethod
    def field_names(cls) -> list[str]:
        """Every flat option name, in :data:`SECTIONS` order."""
        return list(FIELD_SECTION)

    @classmethod
    def option_fields(cls) -> list[tuple[dataclasses.Field, Any]]:
        """``(dataclass field, type hint)`` of every option, in :data:`SECTIONS` order (the CLI's flags)."""
        out = []
        for _, section in SECTIONS:
            hints = typing.get_type_hints(section)
            out += [(f, hints[f.name]) for f in dataclasses.fields(section)]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a flat or nested dict (:func:`flat_config`); unknown keys are a
        :class:`UserError` naming ``source``.

        A recipe method (:data:`RECIPES`) fills in its :data:`METHOD_PRESETS` values for every
        key that ``data`` does not give.
        """
        data = flat_config(data, source)
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))})")
        preset = _resolve_preset(METHOD_PRESETS.get(data.get("method"), {}), data)
        return cls(**{**preset, **data})

    @classmethod
    def from_json_file(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> "TrainConfig":
        """Read a JSON config file (flat or nested); ``overrides`` (explicit flags) win over the file."""
        data = flat_config(read_config_file(path), str(path))
        data.update(overrides or {})
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes`` (flat options or whole sections) applied."""
        sections = {name: changes.pop(name, getattr(self, name)) for name in SECTION_NAMES}
        return type(self)(**sections, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def demo(cls, **overrides: Any) -> "TrainConfig":
        """The packaged demo run (``blockout/configs/demo.json``, what ``blockout demo`` trains)."""
        from importlib import resources

        ref = resources.files("blockout") / "configs" / "demo.json"
        with resources.as_file(ref) as path:
            data = flat_config(read_config_file(path), "demo.json")
        return cls.from_dict({**data, **overrides}, source="demo.json")

    @classmethod
    def hard_budgeted(cls, **options: Any) -> "TrainConfig":
        """Our connection-budget recipe (:data:`METHOD_PRESETS`; ``options`` win)."""
        return cls.from_dict({**options, "method": "hard-budgeted"}, source="hard_budgeted")

    @classmethod
    def hard_cocluster(cls, **options: Any) -> "TrainConfig":
        """Our co-clustered warm start (:data:`METHOD_PRESETS`; ``options`` win)."""
        return cls.from_dict({**options, "method": "hard-cocluster"}, source="hard_cocluster")


#: the default of every option (from the sections)
_DEFAULTS: dict[str, Any] = {f.name: f.default for _, cls in SECTIONS for f in dataclasses.fields(cls)}


def _check_sizes(cfg: "TrainConfig") -> None:
    """Upper bounds (``analysis.limits``), so a config file cannot make training allocate terabytes."""
    from analysis.limits import hint, limit

    for name, cap in (("nodes", "max_nodes"), ("clusters", "max_clusters")):
        if getattr(cfg, name) > limit(cap):
            raise UserError(f"{name}={getattr(cfg, name)} is too large {hint(cap)}")
    if cfg.nodes * cfg.clusters * 4 > limit("max_array_bytes"):
        raise UserError(f"nodes x clusters = {cfg.nodes} x {cfg.clusters} memberships is too large "
                        f"{hint('max_array_bytes')}")
    for name, cap in (("depth", 1000), ("image_size", 65536), ("batch_size", 1 << 24)):
        if getattr(cfg, name) > cap:
            raise UserError(f"{name}={getattr(cfg, name)} is too large (at most {cap})")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` with one-line errors for every failure."""
    data = read_json(path, "config file")
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Check (and mildly coerce: int -> float, 3.0 -> 3) ``value`` against a type hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} must be set, got null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - only reached when a new field uses an unsupported type
        return value
    raise UserError(f"{name} must be {'null or ' if optional else ''}{base.__name__}, got {value!r}")

