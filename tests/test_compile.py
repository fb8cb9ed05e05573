"""Compiling a thresholded hierarchy into a branched network: plan, exactness, saving, the command."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.compile_plan import group_order, live_connections, plan_blocks
from analysis.synthetic import make_synthetic_run
from analysis.threshold import signature_codes
from blockout.cli import main
from blockout.cmd_compile import compile_run
from blockout.compile import (CompiledNet, build_compiled, effective_weights, export_compiled, load_compile_inputs,
                              load_compiled, masked_stack, save_compiled)
from blockout.config import TrainConfig
from blockout.train import train

torch.set_num_threads(1)


def codes_of(*rows):
    """Signature codes from lists of cluster indices per node."""
    return np.array([sum(1 << c for c in r) for r in rows], dtype=np.int64)


def random_stack(rng, sizes, k, p_in, mask="count", scale=0.5, trunk_all=True):
    C = [rng.random((n, k)) < p_in for n in sizes]
    if trunk_all:
        C[0][:] = True
    names = [f"s{i}" for i in range(len(sizes))]
    lnames = [f"fc{i}" for i in range(1, len(sizes))]
    W = {l: (rng.standard_normal((sizes[j + 1], sizes[j])).astype(np.float32),
             rng.standard_normal(sizes[j + 1]).astype(np.float32)) for j, l in enumerate(lnames)}
    mem = {n: c.astype(np.float32) for n, c in zip(names, C)}
    layers = effective_weights(W, mem, names, lnames, {l: (mask, scale) for l in lnames}, expected=False)
    plan = plan_blocks([signature_codes(c) for c in C], k, names, lnames)
    return plan, layers


def compiled_of(plan, layers, n_in, prefer_bmm=True):
    return build_compiled(plan, layers, n_in, {"kind": "identity", "input_shape": [n_in]}, prefer_bmm=prefer_bmm).eval()


def max_diff(net, layers, n_in, n=64, seed=0):
    x = torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((net(x) - masked_stack(x, layers)).abs().max())


class TestPlan:
    def test_two_branches_blocks_and_counts(self):
        # trunk shared; hidden: 2 nodes in cluster 0, 2 in cluster 1, one dead; classes one per cluster
        p = plan_blocks([codes_of([0, 1], [0, 1]), codes_of([0], [1], [0], [1], []), codes_of([0], [1])], 2)
        assert p.kept["s1"].tolist() == [True, True, True, True, False]
        fc2 = p.layer_plans[1]
        assert [(b.out_start, b.out_stop, b.in_ranges) for b in fc2.blocks] == [(0, 1, ((0, 2),)), (1, 2, ((2, 4),))]
        assert fc2.in_nodes.tolist() == [0, 2, 1, 3]  # hidden nodes regrouped by signature
        assert fc2.equal_blocks()
        assert (p.macs_before, p.macs_after) == (2 * 5 + 5 * 2, 2 * 4 + 2 * 2)
        assert p.params_after == p.macs_after + 4 + 2
        assert [b["classes"] for b in p.branches] == [[0], [1]]
        assert fc2.live == 4 and fc2.density == pytest.approx(0.4)

    def test_node_in_several_clusters_gets_the_union_of_inputs(self):
        # hidden node 2 is in both clusters: both classes read it, so the two blocks overlap on it
        p = plan_blocks([codes_of([0, 1]), codes_of([0], [1], [0, 1]), codes_of([0], [1])], 2)
        blocks = p.layer_plans[1].blocks
        order = p.layer_plans[1].in_nodes.tolist()
        cols = [sorted(order[i] for a, b in blk.in_ranges for i in range(a, b)) for blk in blocks]
        assert cols == [[0, 2], [1, 2]]
        assert p.macs_after == 3 + 4  # fc1 dense (3 x 1), classifier 2 + 2
        assert len(p.branches) == 1  # the shared node joins the branches

    def test_dead_class_and_constant_nodes(self):
        # class 1 is in cluster 2, which no hidden node has: no live path, it predicts from its bias
        # hidden node 1 is in cluster 1 only, which the trunk lacks: a constant that feeds class 0? no,
        # class 0 is in cluster 0 only, so it is removed as well
        p = plan_blocks([codes_of([0], [0]), codes_of([0], [1]), codes_of([0], [2])], 3)
        assert p.const_classes.tolist() == [1]
        assert p.varying["s1"].tolist() == [True, False]
        assert p.kept["s1"].tolist() == [True, False]
        assert p.removed() == {"s0": 0, "s1": 1, "s2": 1}

    def test_one_cluster_is_a_dense_stack(self):
        p = plan_blocks([np.ones(4, np.int64), np.ones(3, np.int64), np.ones(2, np.int64)], 1)
        assert p.macs_after == p.macs_before == 4 * 3 + 3 * 2
        assert all(len(lp.blocks) == 1 for lp in p.layer_plans)

    def test_empty_cluster_and_everything_dead(self):
        # cluster 1 has no node anywhere (empty); every class lives in it: nothing varies
        p = plan_blocks([codes_of([0]), codes_of([0], [0]), codes_of([1], [1])], 2)
        assert p.const_classes.tolist() == [0, 1]
        assert p.macs_after == 0 and p.kept["s1"].sum() == 0

    def test_group_order_nested_is_depth_first(self):
        assert group_order(np.array([0b10000, 0b00011, 0b01100, 0b00001, 0b01000, 0b00100, 0b00010])) == \
            [0b00011, 0b00001, 0b00010, 0b01100, 0b00100, 0b01000, 0b10000]

    def test_live_connections_matches_brute_force(self):
        rng = np.random.default_rng(1)
        a, b = rng.integers(0, 16, 30), rng.integers(0, 16, 20)
        assert live_connections(a, b) == int(((a[:, None] & b[None, :]) != 0).sum())

    def test_planted_run_density(self, tmp_path):
        run = make_synthetic_run(tmp_path / "r", trunk=16, hidden=(24, 24), classes=12, clusters=6, groups=2,
                                 n_snapshots=2)
        inp = load_compile_inputs(run, 0.5)
        dens = [lp.density for lp in inp.plan.layer_plans]
        assert dens == pytest.approx([1.0, 1 / 2, 1 / 6])  # trunk shared, super-groups, clusters


class TestExactness:
    @pytest.mark.parametrize("mask", ["count", "union"])
    @pytest.mark.parametrize("prefer_bmm", [True, False])
    def test_random_hierarchies(self, mask, prefer_bmm):
        rng = np.random.default_rng(0 if mask == "count" else 1)
        for trial in range(40):
            k = int(rng.integers(1, 6))
            sizes = [int(rng.integers(1, 10)) for _ in range(int(rng.integers(2, 5)))]
            plan, layers = random_stack(rng, sizes, k, rng.uniform(0.15, 0.9), mask, scale=1.0 / k,
                                        trunk_all=trial % 2 == 0)
            net = compiled_of(plan, layers, sizes[0], prefer_bmm)
            assert max_diff(net, layers, sizes[0], seed=trial) <= 1e-5, (trial, sizes, k)

    @pytest.mark.parametrize("k", [2, 4, 8])
    def test_equal_towers_use_batched_products(self, k):
        # every hidden node in one cluster, equal branches: batched layers kept in the grouped layout
        rng = np.random.default_rng(k)
        n = 8 * k
        C = [np.ones((16, k), bool)] + [np.eye(k, dtype=bool)[np.arange(n) % k] for _ in range(3)] + \
            [np.eye(k, dtype=bool)[np.arange(2 * k) % k]]
        names, lnames = [f"s{i}" for i in range(5)], [f"fc{i}" for i in range(1, 5)]
        sizes = [c.shape[0] for c in C]
        W = {l: (rng.standard_normal((sizes[j + 1], sizes[j])).astype(np.float32),
                 rng.standard_normal(sizes[j + 1]).astype(np.float32)) for j, l in enumerate(lnames)}
        layers = effective_weights(W, {s: c.astype(np.float32) for s, c in zip(names, C)}, names, lnames,
                                   {l: ("count", 1.0 / k) for l in lnames}, expected=False)
        plan = plan_blocks([signature_codes(c) for c in C], k, names, lnames)
        net = compiled_of(plan, layers, 16)
        kinds = [lay["kind"] for lay in net.head.layers]
        assert kinds == ["blocks", "bmm", "bmm", "bmm"]
        assert max_diff(net, layers, 16) <= 1e-5
        assert plan.macs_after == 16 * n + 2 * n * n // k + n * 2 * k // k

    def test_count_mask_counts_shared_clusters(self):
        # output node and input node share two clusters: the block holds 2 * scale * W there
        C = [np.array([[1, 1]], bool), np.array([[1, 1], [1, 0]], bool), np.array([[1, 1]], bool)]
        names, lnames = ["t", "h", "c"], ["fc1", "fc2"]
        W = {"fc1": (np.ones((2, 1), np.float32), np.zeros(2, np.float32)),
             "fc2": (np.ones((1, 2), np.float32), np.zeros(1, np.float32))}
        layers = effective_weights(W, {s: c.astype(np.float32) for s, c in zip(names, C)}, names, lnames,
                                   {l: ("count", 0.5) for l in lnames}, expected=False)
        plan = plan_blocks([signature_codes(c) for c in C], 2, names, lnames)
        net = compiled_of(plan, layers, 1)
        x = torch.tensor([[1.0]])
        # h = [relu(2 * .5), relu(1 * .5)] = [1, .5]; out = 2 * .5 * 1 + 1 * .5 * .5 = 1.25
        assert float(net(x).detach()) == pytest.approx(1.25)
        assert float(masked_stack(x, layers)) == pytest.approx(1.25)

    def test_dead_class_predicts_its_bias_and_constants_fold(self):
        # hidden node 1 has cluster 1, the trunk has none: it outputs relu(b1) for every input,
        # and class 1 (cluster 1 only) sees only that constant; class 2 shares no cluster at all
        C = [np.array([[1, 0, 0]] * 3, bool), np.array([[1, 0, 0], [0, 1, 0]], bool),
             np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], bool)]
        names, lnames = ["t", "h", "c"], ["fc1", "fc2"]
        rng = np.random.default_rng(3)
        W = {"fc1": (rng.standard_normal((2, 3)).astype(np.float32), np.array([0.3, 0.7], np.float32)),
             "fc2": (rng.standard_normal((3, 2)).astype(np.float32), np.array([0.1, 0.2, -0.4], np.float32))}
        layers = effective_weights(W, {s: c.astype(np.float32) for s, c in zip(names, C)}, names, lnames,
                                   {l: ("union", 1.0) for l in lnames}, expected=False)
        plan = plan_blocks([signature_codes(c) for c in C], 3, names, lnames)
        assert plan.const_classes.tolist() == [1, 2]
        net = compiled_of(plan, layers, 3)
        x = torch.randn(5, 3)
        y = net(x).detach()
        assert torch.allclose(y, masked_stack(x, layers), atol=1e-6)
        assert torch.allclose(y[:, 2], torch.full((5,), -0.4))  # bias alone
        assert torch.allclose(y[:, 1], torch.full((5,), 0.2 + W["fc2"][0][1, 1] * 0.7))  # bias + folded constant


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny trained run with a conv trunk and train_state.pt (two hidden layers, k = 3)."""
    root = tmp_path_factory.mktemp("compile")
    h = root / "h.json"
    h.write_text(json.dumps({"a": ["x1", "x2", "x3"], "b": ["y1", "y2", "y3"], "c": ["z1", "z2", "z3"]}))
    cfg = TrainConfig(hierarchy=str(h), samples_per_class=6, test_samples_per_class=4, image_size=8, nodes=12,
                      depth=2, clusters=3, epochs=2, batch_size=9, device="cpu", method="hard-learned",
                      hidden_membership="categorical", out=str(root / "run"))
    train(cfg)
    return root / "run"


class TestTrainedRun:
    @pytest.mark.parametrize("tau", [0.5, 0.8])
    def test_compiled_equals_thresholded_on_the_test_set(self, trained_run, tmp_path, tau):
        r = compile_run(trained_run, tmp_path / "out", tau=tau, export=False, progress=lambda m: None)
        assert r["exactness"]["ok"] and r["exactness"]["max_abs_diff"] <= 1e-5
        assert r["exactness"]["inputs"].startswith("test set")
        assert r["accuracy"]["compiled"] == r["accuracy"]["thresholded"]
        assert r["trunk"]["included"] and r["trunk"]["params"] > 0
        assert r["params"]["after"] <= r["params"]["before"]

    def test_expected_reference_is_the_run_model(self, trained_run):
        # the expected-mask reference built from the snapshot equals BlockoutNet in eval mode
        from blockout.checkpoint import load_train_state
        from blockout.compile import compile_run_network, reference_net
        from blockout.models import build_model

        inp = load_compile_inputs(trained_run, 0.5)
        _, _, exp = compile_run_network(inp)
        state = load_train_state(trained_run / rf.TRAIN_STATE)
        cfg = TrainConfig.from_dict(state["config"])
        model = build_model(cfg, inp.input_shape, 9)
        model.load_state_dict(state["model"])
        x = torch.randn(6, *inp.input_shape)
        with torch.no_grad():
            assert torch.allclose(model.eval()(x), reference_net(inp.trunk, exp)(x), atol=1e-5)

    def test_save_load_export_and_finetune(self, trained_run, tmp_path):
        out = tmp_path / "out"
        r = compile_run(trained_run, out, tau=0.5, finetune_epochs=1, progress=lambda m: None)
        assert set(r["files"]) >= {"compiled", "structure", "export", "finetuned"}
        assert 0.0 <= r["accuracy"]["finetuned"] <= 1.0 and r["finetune"]["epochs"] == 1
        obj = torch.load(out / "compiled.pt", weights_only=True)  # plain data only
        assert isinstance(obj["structure"], str)
        net = load_compiled(out / "compiled.pt")
        assert isinstance(net, CompiledNet)
        x = torch.randn(3, 3, 8, 8)
        ep = torch.export.load(str(out / "compiled.pt2")).module()
        with torch.no_grad():
            assert torch.allclose(ep(x), net(x), atol=1e-6)
            assert torch.allclose(ep(x[:1]), net(x[:1]), atol=1e-6)  # batch size is dynamic
        report = json.loads((out / "compile.json").read_text())
        assert report["accuracy"]["compiled"] == r["accuracy"]["compiled"]

    def test_step_without_matching_trunk_is_refused(self, trained_run, tmp_path, capsys):
        best = [e["step"] for e in rf.iter_snapshot_entries(trained_run) if e.get("has_weights")]
        steps = [e["step"] for e in rf.iter_snapshot_entries(trained_run)]
        first_weights = min(best)
        last = max(steps)
        if first_weights == last:
            pytest.skip("best and last snapshot coincide in this run")
        code = main(["compile", str(trained_run), "--step", str(first_weights), "-o", str(tmp_path / "o")])
        assert code == 2
        assert "belong to step" in capsys.readouterr().err


class TestCommand:
    def test_planted_run_without_dataset(self, tmp_path, capsys):
        run = make_synthetic_run(tmp_path / "r", trunk=16, hidden=(24, 24), classes=12, clusters=6, groups=2,
                                 n_snapshots=2)
        assert main(["compile", str(run), "-o", str(tmp_path / "o"), "--no-export"]) == 0
        text = capsys.readouterr().out
        assert "same outputs" in text and "accuracy not measured" in text
        report = json.loads((tmp_path / "o" / "compile.json").read_text())
        assert report["macs"]["fc_after"] == 16 * 24 + 24 * 24 // 2 + 24 * 12 // 6
        assert len(report["branches"]) == 2  # the two planted super-groups

    def test_head_only_when_trunk_weights_are_missing(self, tmp_path, capsys):
        import shutil

        from pathlib import Path

        demo = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
        assert main(["compile", str(demo), "-o", str(tmp_path / "o"), "--no-export"]) == 0
        text = capsys.readouterr().out
        assert "trunk weights not available" in text and "same outputs" in text
        # regression: the missing trunk was reported as "the unchanged trunk (0)"
        assert "unchanged trunk (0)" not in text and "the trunk is not included" in text
        net = load_compiled(tmp_path / "o" / "compiled.pt")
        assert net.structure["trunk"] is None
        assert not (tmp_path / "o" / "compiled.pt2").exists()
        shutil.rmtree(tmp_path / "o")

    @pytest.mark.parametrize("args,match", [
        (["compile", "/nonexistent/run", "-o", "X"], "not found"),
        (["compile", "RUN", "-o", "X", "--threshold", "1.5"], "threshold"),
        (["compile", "RUN", "-o", "X", "--step", "7"], "no snapshot at step 7"),
    ])
    def test_bad_input_is_one_line(self, tmp_path, capsys, args, match):
        run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=2)
        args = [str(run) if a == "RUN" else str(tmp_path / "x") if a == "X" else a for a in args]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err

    @pytest.mark.parametrize("inside", ["", "compiled"])
    def test_out_inside_the_run_folder_is_refused(self, tmp_path, capsys, inside):
        # regression: -o RUN (or a folder in it) wrote compiled.pt, compile.json, ... among the run's files
        run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=2)
        before = sorted(p.name for p in run.iterdir())
        assert main(["compile", str(run), "-o", str(run / inside) if inside else str(run), "--no-export"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "inside the run folder" in err
        assert sorted(p.name for p in run.iterdir()) == before

    def test_finetune_without_data_is_refused_before_writing(self, tmp_path, capsys):
        # regression: the refusal came after compiled.pt, structure.json (and the export) were written
        run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=2)
        assert main(["compile", str(run), "-o", str(tmp_path / "o"), "--finetune", "1", "--no-export"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--finetune needs the run's data" in err
        assert not (tmp_path / "o").exists()

    def test_everything_dead_prints_no_ratio(self, tmp_path, capsys):
        # regression: a τ above every P printed "48,960 -> 0 (0.0%, 1000000000000.00x fewer)"
        run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=2)
        assert main(["compile", str(run), "-o", str(tmp_path / "o"), "--threshold", "1", "--no-export"]) == 0
        line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("multiply-adds"))
        assert line.endswith("-> 0 (0.0%, no live connection left)"), line

    def test_plain_run_has_nothing_to_compile(self, tmp_path, capsys):
        run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=1)
        rec = fmt.read_run(run)
        rec.topology = fmt.Topology(layers=[dataclasses.replace(lay, in_set=None, out_set=None, mask=None)
                                            for lay in rec.topology.layers])
        rec.config["method"] = "fc"
        fmt.write_run(run, rec)
        assert main(["compile", str(run), "-o", str(tmp_path / "o")]) == 2
        assert "nothing to compile" in capsys.readouterr().err


def test_round_trip_without_project_module_state(tmp_path):
    rng = np.random.default_rng(5)
    plan, layers = random_stack(rng, [6, 9, 4], 3, 0.5)
    net = compiled_of(plan, layers, 6)
    save_compiled(net, tmp_path / "c.pt")
    back = load_compiled(tmp_path / "c.pt")
    x = torch.randn(4, 6)
    assert torch.equal(back(x), net(x))
    assert export_compiled(net, tmp_path / "c.pt2", x) == "torch.export"
    assert torch.allclose(torch.export.load(str(tmp_path / "c.pt2")).module()(x), net(x))


def test_default_step_is_the_last_with_weights(tmp_path):
    # regression: memberships of a later snapshot were paired with the weights of an earlier one
    run = make_synthetic_run(tmp_path / "r", trunk=8, hidden=(8,), classes=4, clusters=2, groups=1, n_snapshots=3)
    entries = list(rf.iter_snapshot_entries(run))
    last = entries[-1]
    f = run / rf.SNAPSHOT_DIR / last["file"]
    rf.save_npz(f, {k: v for k, v in rf.load_npz(f).items() if k.startswith(rf.PROBS_PREFIX)})
    last["has_weights"] = False
    rf.atomic_write_json(run / rf.SNAPSHOT_DIR / rf.SNAPSHOT_INDEX, {"snapshots": entries})
    r = compile_run(run, tmp_path / "o", export=False, progress=lambda m: None)
    assert r["step"] == r["weights_step"] == entries[1]["step"]


class TestInferencePath:
    """The inference path (grad off: ones rows carry the biases, reused buffers, bmm runs) against
    the plain path (grad on: what training and torch.export use) and the masked model."""

    def _both(self, net, x):
        with torch.no_grad():
            fast = net(x)
        with torch.enable_grad():
            plain = net(x).detach()
        return fast, plain

    @pytest.mark.parametrize("prefer_bmm", [True, False])
    def test_fast_equals_plain_on_random_hierarchies(self, prefer_bmm):
        rng = np.random.default_rng(11)
        for trial in range(30):
            k = int(rng.integers(1, 6))
            sizes = [int(rng.integers(1, 12)) for _ in range(int(rng.integers(2, 6)))]
            plan, layers = random_stack(rng, sizes, k, rng.uniform(0.15, 0.9), "count", scale=1.0 / k,
                                        trunk_all=trial % 3 == 0)
            net = compiled_of(plan, layers, sizes[0], prefer_bmm)
            x = torch.randn(7, sizes[0], generator=torch.Generator().manual_seed(trial))
            fast, plain = self._both(net, x)
            assert float((fast - plain).abs().max()) <= 1e-5, (trial, sizes, k)
            assert float((fast - masked_stack(x, layers)).abs().max()) <= 1e-5, (trial, sizes, k)

    def test_mixed_layer_batches_the_equal_runs(self):
        # hidden clusters of sizes 3, 3, 3, 5: the three equal towers are one bmm, the fifth a product
        k = 4
        sizes_c = [3, 3, 3, 5]
        hid = np.repeat(np.arange(k), sizes_c)
        C = [np.eye(k, dtype=bool)[np.arange(16) % k], np.eye(k, dtype=bool)[hid], np.eye(k, dtype=bool)[hid],
             np.eye(k, dtype=bool)[np.arange(8) % k]]
        names, lnames = ["s0", "s1", "s2", "s3"], ["fc1", "fc2", "fc3"]
        rng = np.random.default_rng(2)
        W = {l: (rng.standard_normal((C[j + 1].shape[0], C[j].shape[0])).astype(np.float32),
                 rng.standard_normal(C[j + 1].shape[0]).astype(np.float32)) for j, l in enumerate(lnames)}
        layers = effective_weights(W, {s: c.astype(np.float32) for s, c in zip(names, C)}, names, lnames,
                                   {l: ("count", 1.0) for l in lnames}, expected=False)
        plan = plan_blocks([signature_codes(c) for c in C], k, names, lnames)
        net = compiled_of(plan, layers, 16)
        ops = [[(op["kind"], op["groups"], op["bias"]) for op in lay_ops] for lay_ops, _ in net.head._fast_ops]
        # first layer reads the input (no ones row): biases added by baddbmm/addmm; later ones carry them
        assert ops[0] == [("bmm", 3, True), ("mm", 1, True)]
        assert ops[1] == [("bmm", 3, False), ("mm", 1, False)]
        assert ops[2] == [("bmm", 3, False), ("mm", 1, False)]
        x = torch.randn(9, 16)
        fast, plain = self._both(net, x)
        assert float((fast - masked_stack(x, layers)).abs().max()) <= 1e-5
        assert float((fast - plain).abs().max()) <= 1e-5

    def test_changed_parameters_rebuild_the_cached_weights(self):
        rng = np.random.default_rng(4)
        plan, layers = random_stack(rng, [6, 8, 8, 4], 2, 0.6)
        net = compiled_of(plan, layers, 6)
        x = torch.randn(5, 6)
        with torch.no_grad():
            before = net(x).clone()
            for p in net.parameters():
                p.mul_(1.5).add_(0.1)  # as an optimizer step would: in place
            after = net(x)
        with torch.enable_grad():
            plain = net(x).detach()
        assert not torch.allclose(before, after)
        assert torch.allclose(after, plain, atol=1e-5)

    def test_outputs_of_earlier_calls_are_not_overwritten(self):
        # one cluster: the classes come out in order, so the last layer's output is returned as is
        rng = np.random.default_rng(6)
        plan, layers = random_stack(rng, [6, 8, 8, 4], 1, 1.0)
        net = compiled_of(plan, layers, 6)
        assert net.head.out_identity and not net.head.has_const
        x1, x2 = torch.randn(5, 6), torch.randn(5, 6)
        with torch.no_grad():
            y1 = net(x1)
            keep = y1.clone()
            net(x2)
            net(torch.randn(3, 6))  # another batch size
        assert torch.equal(y1, keep)
        assert torch.allclose(y1, masked_stack(x1, layers), atol=1e-5)

    def test_finetuning_keeps_the_ones_structure_out_of_the_parameters(self):
        # the parameters stay the plain blocks: a gradient step changes weights and biases only,
        # and the inference path still equals the plain path afterwards
        rng = np.random.default_rng(8)
        plan, layers = random_stack(rng, [6, 8, 8, 4], 2, 0.7)
        net = compiled_of(plan, layers, 6)
        shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(16, 6)
        loss = net(x).pow(2).mean()
        loss.backward()
        opt.step()
        assert {n: tuple(p.shape) for n, p in net.named_parameters()} == shapes
        fast, plain = self._both(net, x)
        assert torch.allclose(fast, plain, atol=1e-5)

    @pytest.mark.parametrize("k", [1, 2])
    def test_non_contiguous_input(self, k):
        # one cluster: the input is read in place (no gather); two: gathered. Both from a strided view
        rng = np.random.default_rng(9)
        plan, layers = random_stack(rng, [8, 6, 6, 3], k, 1.0 if k == 1 else 0.6)
        net = compiled_of(plan, layers, 8)
        x = torch.randn(5, 16)[:, ::2]  # (5, 8), every other column: not contiguous
        fast, plain = self._both(net, x)
        assert torch.allclose(fast, masked_stack(x, layers), atol=1e-5)
        assert torch.allclose(fast, plain, atol=1e-5)
        assert "layers=[" in repr(net.head)
