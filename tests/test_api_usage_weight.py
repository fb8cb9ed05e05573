"""Regression: ``--class-usage-weight`` weights the class node set's usage balancing.

It was validated but never read: the categorical class set got ``--usage-weight`` instead.
"""

import pytest
import torch

from blockout.config import TrainConfig
from blockout.emergence import emergence_loss
from blockout.membership import CategoricalClusters
from blockout.models import build_model


def _model(**kw):
    cfg = TrainConfig(method="hard-learned", clusters=3, nodes=6, depth=1, hidden_membership="categorical",
                      class_membership="categorical", class_init_noise=2.0, **kw)
    torch.manual_seed(0)
    return cfg, build_model(cfg, (5,), 4)


def _usage(model, names):
    return sum(float(model.node_sets[n].usage_loss().detach()) for n in names)


def test_class_set_uses_class_usage_weight():
    cfg, model = _model(usage_weight=0.0, class_usage_weight=2.0)
    assert isinstance(model.node_sets["classes"], CategoricalClusters)
    term, _ = emergence_loss(model, cfg, 0.0)
    expected = 2.0 * _usage(model, ["classes"])
    assert expected > 1e-4  # the noisy start is unbalanced, so the test can tell the weights apart
    assert term is not None and float(term.detach()) == pytest.approx(expected, rel=1e-6)


def test_hidden_sets_use_usage_weight_only():
    cfg, model = _model(usage_weight=1.5, class_usage_weight=0.0)
    term, _ = emergence_loss(model, cfg, 0.0)
    assert float(term.detach()) == pytest.approx(1.5 * _usage(model, ["h1"]), rel=1e-6)
    cfg0, model0 = _model(usage_weight=0.0, class_usage_weight=0.0)
    assert emergence_loss(model0, cfg0, 0.0)[0] is None


def test_both_weights_add_up():
    cfg, model = _model(usage_weight=0.5, class_usage_weight=3.0)
    term, _ = emergence_loss(model, cfg, 0.0)
    assert float(term.detach()) == pytest.approx(0.5 * _usage(model, ["h1"]) + 3.0 * _usage(model, ["classes"]), rel=1e-6)
