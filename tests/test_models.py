"""Models of the paper's table: topology per method, forward shapes, parameter groups."""

import numpy as np
import pytest
import torch

from blockout import BlockoutLinear, NodeClusters
from blockout.config import METHODS, TrainConfig
from blockout.errors import UserError
from blockout.models import BlockoutNet, ConvTrunk, IdentityTrunk, MLPTrunk, build_model, resolve_trunk
from blockout.train import make_optimizer, param_groups

torch.set_num_threads(1)


def tiny(method, **kw):
    torch.manual_seed(0)
    args = dict(nodes=8, depth=2, clusters=3)
    args.update(kw)
    return BlockoutNet(method, (3, 8, 8), 5, **args)


class TestTrunks:
    def test_conv_output_size(self):
        t = ConvTrunk(3, widths=(4, 8), pool=2)
        assert t(torch.zeros(2, 3, 16, 16)).shape == (2, t.out_features) == (2, 32)

    def test_mlp_and_identity(self):
        assert MLPTrunk(12, 7)(torch.zeros(3, 12)).shape == (3, 7)
        assert IdentityTrunk(12)(torch.zeros(3, 3, 4)).shape == (3, 12)

    def test_auto_picks_by_shape(self):
        assert resolve_trunk("auto", (3, 32, 32)) == "conv"
        assert resolve_trunk("auto", (20,)) == "identity"
        with pytest.raises(UserError, match=r"trunk=conv needs image inputs.*\[20\]"):
            resolve_trunk("conv", (20,))

    def test_bad_arguments_show_value(self):
        with pytest.raises(ValueError, match="widths=()"):
            ConvTrunk(3, widths=())


class TestTopology:
    @pytest.mark.parametrize("method", METHODS)
    def test_forward_shape_and_layers(self, method):
        m = tiny(method)
        assert m(torch.randn(4, 3, 8, 8)).shape == (4, 5)
        topo = m.topology()
        names = [l["name"] for l in topo["layers"]]
        assert names == (["classifier"] if method == "baseline" else ["fc1", "fc2", "classifier"])
        assert topo["layers"][-1]["role"] == "classifier"
        assert all(l["role"] == "hidden" for l in topo["layers"][:-1])
        w, b = m.layer_params()
        for l in topo["layers"]:
            assert w[l["name"]].shape == (l["out_features"], l["in_features"])
            assert b[l["name"]].shape == (l["out_features"],)

    @pytest.mark.parametrize("method", ["baseline", "fc", "dropout"])
    def test_plain_methods_have_no_node_sets(self, method):
        topo = tiny(method).topology()
        assert topo["node_sets"] == []
        assert all(l["in_set"] is None and l["out_set"] is None and l["mask"] is None for l in topo["layers"])

    def test_dropout_on_inputs_after_hidden_layers(self):
        m = tiny("dropout", dropout=0.3)
        assert set(m.drop) == {"fc2", "classifier"}  # the trunk features are kept
        assert [l.get("dropout") for l in m.topology()["layers"]] == [None, 0.3, 0.3]
        assert sum(isinstance(x, torch.nn.Dropout) for x in tiny("fc").modules()) == 0

    @pytest.mark.parametrize("method,mode,learned", [("soft-learned", "soft", True), ("hard-fixed", "hard", False),
                                                     ("hard-learned", "hard", True)])
    def test_blockout_node_sets_shared_between_layers(self, method, mode, learned):
        m = tiny(method)
        topo = m.topology()
        assert [(s["name"], s["role"], s["size"], s["clusters"]) for s in topo["node_sets"]] == [
            ("trunk", "trunk", m.trunk.out_features, 3), ("h1", "hidden", 8, 3), ("h2", "hidden", 8, 3),
            ("classes", "classes", 5, 3)]
        assert [s["trainable"] for s in topo["node_sets"]] == [False, learned, learned, learned]
        assert [(l["in_set"], l["out_set"], l["mode"]) for l in topo["layers"]] == [
            ("trunk", "h1", mode), ("h1", "h2", mode), ("h2", "classes", mode)]
        # one NodeClusters object per node set, shared by the two layers touching it
        assert m.fc["fc1"].out_clusters is m.fc["fc2"].in_clusters is m.node_sets["h1"]
        assert m.fc["fc2"].out_clusters is m.fc["classifier"].in_clusters is m.node_sets["h2"]
        assert all(isinstance(l, BlockoutLinear) for l in m.fc.values())
        # the trunk node set is in every cluster
        assert np.array_equal(m.node_set_probs()["trunk"], np.ones((m.trunk.out_features, 3), np.float32))

    def test_learned_trunk_clusters(self):
        m = tiny("hard-learned", trunk_clusters="learned")
        assert m.topology()["node_sets"][0]["trainable"] is True
        assert m.node_set_probs()["trunk"].min() < 1.0

    def test_count_mask_scale_defaults_to_one_over_k(self):
        assert tiny("hard-learned", clusters=4).fc["fc1"].scale == pytest.approx(0.25)
        assert tiny("hard-learned", mask="union").fc["fc1"].scale == pytest.approx(1.0)

    def test_one_sample_per_node_set_per_forward(self, monkeypatch):
        m = tiny("hard-learned")
        m.train()
        calls = {}
        for name, ns in m.node_sets.items():
            orig = ns._sample

            def counted(orig=orig, name=name):
                calls[name] = calls.get(name, 0) + 1
                return orig()

            monkeypatch.setattr(ns, "_sample", counted)
        m(torch.randn(2, 3, 8, 8))
        assert calls == {"trunk": 1, "h1": 1, "h2": 1, "classes": 1}

    def test_eval_is_deterministic_and_train_is_stochastic(self):
        m = tiny("hard-learned")
        x = torch.randn(4, 3, 8, 8)
        m.eval()
        assert torch.equal(m(x), m(x))
        m.train()
        torch.manual_seed(1)
        a = m(x)
        b = m(x)
        assert not torch.equal(a, b)

    def test_bad_method_and_classes(self):
        with pytest.raises(UserError, match="method='nope'"):
            BlockoutNet("nope", (3, 8, 8), 5)
        with pytest.raises(UserError, match="at least 2 classes.*1"):
            BlockoutNet("fc", (3, 8, 8), 1)


class TestParamGroups:
    def test_theta_gets_own_lr_and_no_weight_decay(self):
        cfg = TrainConfig(method="hard-learned", nodes=8, clusters=3, lr=0.02, theta_lr_mult=7.0, weight_decay=1e-3)
        torch.manual_seed(0)
        m = build_model(cfg, (3, 8, 8), 5)
        opt = make_optimizer(m, cfg)
        groups = {g["name"]: g for g in opt.param_groups}
        theta_ids = {id(p) for p in m.theta_parameters()}
        assert theta_ids and {id(p) for p in groups["theta"]["params"]} == theta_ids
        assert groups["theta"]["weight_decay"] == 0.0
        assert groups["theta"]["lr"] == pytest.approx(0.14)
        assert groups["weights"]["weight_decay"] == 1e-3 and groups["weights"]["lr"] == pytest.approx(0.02)
        assert groups["no_decay"]["weight_decay"] == 0.0
        assert all(p.ndim == 1 for p in groups["no_decay"]["params"])
        # every trainable parameter is in exactly one group
        ids = [id(p) for g in opt.param_groups for p in g["params"]]
        assert sorted(ids) == sorted(id(p) for p in m.parameters() if p.requires_grad)

    def test_theta_step_uses_its_lr_without_decay(self):
        cfg = TrainConfig(method="hard-learned", nodes=8, clusters=3, lr=0.1, theta_lr_mult=3.0,
                          weight_decay=0.5, momentum=0.0)
        torch.manual_seed(0)
        m = build_model(cfg, (3, 8, 8), 5)
        opt = make_optimizer(m, cfg)
        theta = m.node_sets["h1"].theta
        before = theta.detach().clone()
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        theta.grad = torch.ones_like(theta)
        opt.step()
        # plain SGD: Δθ = -lr * mult * grad, and no decay term (which would add -lr*wd*θ)
        assert torch.allclose(theta.detach(), before - 0.3, atol=1e-6)

    def test_fixed_method_has_no_theta_group(self):
        cfg = TrainConfig(method="hard-fixed", nodes=8, clusters=3)
        m = build_model(cfg, (3, 8, 8), 5)
        assert "theta" not in [g["name"] for g in param_groups(m, cfg)]
