"""The public API: BlockoutHead, RunLogger (run folders from any module), the Lightning callback."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

import blockout
from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.run import load_run
from analysis.summary import summarize_run
from blockout import BlockoutHead, BlockoutLinear, NodeClusters, RunLogger
from blockout.config import METHODS
from blockout.errors import UserError
from blockout.logger import find_blockout_parts
from blockout.models import BlockoutNet


def test_exports():
    assert {"BlockoutHead", "RunLogger", "BlockoutLinear", "NodeClusters", "shared_sampling"} <= set(blockout.__all__)


class TestHead:
    @pytest.mark.parametrize("method", METHODS)
    def test_every_paper_method_trains(self, method):
        torch.manual_seed(0)
        head = BlockoutHead(6, 3, hidden=(8, 8), clusters=2, method=method)
        x, y = torch.randn(32, 6), torch.arange(32) % 3
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        before = {k: v.clone() for k, v in head.state_dict().items()}
        loss = nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        changed = {k for k, v in head.state_dict().items() if not torch.equal(v, before[k])}
        assert any("fc." in k and "weight" in k for k in changed)
        thetas = {k for k in changed if k.endswith("theta")}
        # θ trains for the learned methods, stays fixed for hard-fixed, does not exist for plain heads
        assert bool(thetas) == (method in ("soft-learned", "hard-learned")), thetas
        head.eval()
        with torch.no_grad():
            assert torch.equal(head(x), head(x))  # the test-time expectation is deterministic

    def test_same_stack_as_the_trainers_model(self):
        """Head and BlockoutNet come from one builder: same parameters from the same seed."""
        torch.manual_seed(1)
        net = BlockoutNet("hard-learned", (10,), 4, nodes=8, depth=2, clusters=3, trunk="identity")
        torch.manual_seed(1)
        head = BlockoutHead(10, 4, hidden=(8, 8), clusters=3)
        a = {k: v for k, v in net.state_dict().items() if not k.startswith("trunk.")}
        b = head.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
        x = torch.randn(5, 10)
        net.eval(), head.eval()
        assert torch.allclose(net(x), head(x))

    def test_node_sets_are_shared(self):
        head = BlockoutHead(6, 3, hidden=(5,), clusters=2)
        assert head.fc["fc1"].out_clusters is head.fc["classifier"].in_clusters is head.node_sets["h1"]
        assert not head.node_sets["trunk"].trainable  # the backbone's features: in every cluster

    def test_drop_in_for_a_final_layer(self):
        backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        backbone[-1] = BlockoutHead(backbone[-1].in_features, 5, hidden=(6,), clusters=2)
        assert backbone(torch.randn(2, 3, 8, 8)).shape == (2, 5)

    @pytest.mark.parametrize("kw,match", [
        ({"method": "hard-budgeted"}, "hard-budgeted' runs on a schedule of epochs: pass epochs="),
        ({"method": "hard-cocluster"}, "hard-cocluster' runs on a schedule of epochs: pass epochs="),
        ({"method": "magic"}, "method must be one of"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"hidden": (4, 0)}, "hidden must be a sequence of positive integers"),
        ({"mask": "xor"}, "mask='xor' is not one of count, union"),
        ({"memberships": {"colour": 1}}, "unknown membership option"),
        ({"memberships": {"hidden_membership": "tree"}}, "hidden_membership"),
        # regression: these raised float()/iteration errors that did not name the argument
        ({"dropout": "half"}, "dropout must be float, got 'half'"),
        ({"dropout": None}, "dropout must be set, got null"),
        ({"mask_scale": "1/k"}, "mask_scale must be null or float, got '1/k'"),
        ({"hidden": "128"}, "hidden must be a sequence of positive integers, got '128'"),
        ({"hidden": None}, "hidden must be a sequence of positive integers, got None"),
        ({"memberships": [("hidden_membership", "categorical")]}, "memberships must be a mapping of options"),
        ({"recipe": "hard-cocluster"}, "recipe must be a mapping .* our recipes by name go in method=, "
                                       "e.g. method='hard-cocluster'"),
        ({"log": "stdout"}, "log must be a function"),
    ])
    def test_bad_arguments(self, kw, match):
        args = {"in_features": 4, "num_classes": 3, **kw}
        with pytest.raises(ValueError, match=match):
            BlockoutHead(**args)

    @pytest.mark.parametrize("kw,match", [({"lr": "1e-3"}, "lr must be a number >= 0, got '1e-3'"),
                                          ({"lr": -0.1}, "lr must be a number >= 0, got -0.1"),
                                          ({"lr": 0.1, "theta_lr_mult": float("nan")}, "theta_lr_mult must be")])
    def test_bad_param_groups(self, kw, match):
        with pytest.raises(ValueError, match=match):
            BlockoutHead(4, 3, hidden=(5,), clusters=2).param_groups(**kw)

    def test_categorical_memberships_and_usage_loss(self):
        torch.manual_seed(0)
        head = BlockoutHead(6, 3, hidden=(8,), clusters=4, memberships={"hidden_membership": "categorical"})
        assert head.node_sets["h1"].membership == "categorical"
        loss = head.usage_loss()
        assert float(loss.detach()) == pytest.approx(float(head.node_sets["h1"].usage_loss().detach()))
        loss.backward()
        assert head.node_sets["h1"].theta.grad is not None


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(7, 6), nn.ReLU())
        self.fc = BlockoutHead(6, 4, hidden=(5, 5), clusters=3)

    def forward(self, x):
        return self.fc(self.body(x))


def _train(model, steps=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randn(16, 7, generator=g)
        loss = nn.functional.cross_entropy(model(x), torch.arange(16) % 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss


class TestRunLogger:
    def test_run_folder_opens_with_every_reader(self, tmp_path):
        torch.manual_seed(0)
        model = Backbone()
        names = ["cat", "dog", "truck", "ship"]
        with RunLogger(tmp_path / "run", model, class_names=names, config={"lr": 0.01, "note": object()}) as log:
            for step in range(1, 7):
                _train(model, 1)
                if step % 2 == 0:
                    log.snapshot(step)
            log.log_metrics(6, epoch=1, train_loss=torch.tensor(0.9), test_acc=np.float32(0.5), test_loss=float("nan"))
        run = load_run(tmp_path / "run")
        assert run.chain == ["trunk", "h1", "h2", "classes"]
        assert [n.role for n in run.node_sets] == ["trunk", "hidden", "hidden", "classes"]
        assert [(lay.name, lay.in_set, lay.out_set, lay.role) for lay in run.layers] == [
            ("fc1", "trunk", "h1", "hidden"), ("fc2", "h1", "h2", "hidden"), ("classifier", "h2", "classes", "classifier")]
        assert run.class_names == names and run.steps == [0, 2, 4, 6] and run.weight_steps() == [6]
        # the snapshot holds exactly the model's P and raw weights
        P = run.probs(6)["h1"]
        assert np.allclose(P, model.fc.node_sets["h1"].probs.detach().numpy())
        W, b = run.weights()["classifier"]
        assert np.array_equal(W, model.fc.fc["classifier"].weight.detach().numpy())
        rec = run.metrics[0]
        assert rec["train_loss"] == pytest.approx(0.9) and rec["test_acc"] == 0.5 and rec["test_loss"] is None
        assert set(rec["probs"]) == {"trunk", "h1", "h2", "classes"} and rec["seconds"] >= 0
        meta = fmt.read_run(tmp_path / "run").to_json()
        assert meta["config"]["method"] == "hard-learned" and meta["config"]["lr"] == 0.01
        assert meta["config"]["note"].startswith("<object")  # non-JSON values kept as text
        assert meta["topology"]["trunk"]["kind"] == "Backbone"
        summary = summarize_run(tmp_path / "run")
        assert summary["progress"]["epochs_done"] == 1 and summary["accuracy"]["final"]["test_acc"] == 0.5
        entries = rf.iter_snapshot_entries(tmp_path / "run")
        assert entries[-1]["tags"] == ["last"] and entries[-1]["has_weights"]

    def test_plain_head_logs_weights_only(self, tmp_path):
        model = nn.Sequential(nn.Flatten(), BlockoutHead(7, 3, hidden=(4,), method="dropout"))
        with RunLogger(tmp_path / "r", model) as log:
            log.snapshot(1)  # nothing to save: a plain head has no P
            log.log_metrics(2, epoch=1, test_acc=0.4)
        run = load_run(tmp_path / "r")
        assert run.node_sets == [] and run.steps == [2] and run.class_names == ["class 0", "class 1", "class 2"]
        assert [(lay.name, lay.role) for lay in run.layers] == [("fc1", "hidden"), ("classifier", "classifier")]
        assert fmt.read_run(tmp_path / "r").topology.layers[1].dropout == 0.5

    def test_loose_layers_in_any_module(self):
        """BlockoutLinear layers outside a head: node sets named by their name or module path."""
        k = 2
        a, b = NodeClusters(5, k, trainable=False, init="all"), NodeClusters(4, k, name="mid")
        c = NodeClusters(3, k)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.sets = nn.ModuleList([a, b, c])
                self.second = BlockoutLinear(b, c)  # registered before the first on purpose
                self.first = BlockoutLinear(a, b)

        parts = find_blockout_parts(Net())
        assert [n for n, _ in parts.node_sets] == ["sets.0", "mid", "sets.2"]
        assert [lay[0] for lay in parts.layers] == ["first", "second"] and parts.classifier == "second"
        assert parts.roles == {"sets.0": "trunk", "mid": "hidden", "sets.2": "classes"}

    def test_two_heads_need_a_choice(self, tmp_path):
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = BlockoutHead(4, 3, hidden=(5,)), BlockoutHead(4, 6, hidden=(5,))

        with pytest.raises(ValueError, match="class node set is ambiguous"):
            find_blockout_parts(Two())
        parts = find_blockout_parts(Two(), num_classes=6)
        assert parts.roles["b.classes"] == "classes" and parts.classifier == "b.classifier"
        model = Two()
        with RunLogger(tmp_path / "one", model.b, class_names=list("abcdef")):
            pass
        assert load_run(tmp_path / "one").chain == ["trunk", "h1", "classes"]

    def test_errors(self, tmp_path):
        with pytest.raises(ValueError, match="has no Blockout part"):
            RunLogger(tmp_path / "x", nn.Linear(3, 2))
        model = Backbone()
        with pytest.raises(ValueError, match="class_names has 2 names but .* 4 outputs"):
            RunLogger(tmp_path / "x", model, class_names=["a", "b"])
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "notes.txt").write_text("mine")
        with pytest.raises(UserError, match="already exists and is not empty; pass resume=True"):
            RunLogger(tmp_path / "full", model).open()
        assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
        log = RunLogger(tmp_path / "y", model)
        with pytest.raises(RuntimeError, match="not open"):
            log.snapshot(1)
        with log:
            with pytest.raises(ValueError, match="step must be a whole number"):
                log.snapshot(-1)
            with pytest.raises(ValueError, match="tags must be among"):
                log.snapshot(1, tag="favourite")
            with pytest.raises(ValueError, match=r"log_metrics: epoch must be a whole number >= 0, got -1"):
                log.log_metrics(1, epoch=-1)  # regression: the message named the step, not the epoch
            with pytest.raises(ValueError, match=r"snapshot: epoch must be a whole number >= 0, got 1.5"):
                log.snapshot(1, epoch=1.5)
            with pytest.raises(TypeError, match="one number"):
                log.log_metrics(1, loss=torch.ones(3))
            with pytest.raises(UserError, match="being written by another"):
                RunLogger(tmp_path / "y", model, resume=True).open()

    def test_resume_continues_and_replaces_later_records(self, tmp_path):
        torch.manual_seed(0)
        model = Backbone()
        with RunLogger(tmp_path / "r", model, config={"lr": 1}) as log:
            for step in (2, 4, 6):
                log.snapshot(step)
                log.log_metrics(step, epoch=step // 2, test_acc=step / 10)
        # the loop restarts from its checkpoint at step 4: what came after is replaced
        with RunLogger(tmp_path / "r", model, resume=True) as log:
            log.log_metrics(5, epoch=3, test_acc=0.55)
        run = load_run(tmp_path / "r")
        assert [r["step"] for r in run.metrics] == [2, 4, 5] and run.metrics[-1]["test_acc"] == 0.55
        assert run.steps == [0, 2, 4, 5] and run.weight_steps() == [5]
        other = BlockoutHead(7, 4, hidden=(9,))
        with pytest.raises(UserError, match="cannot resume .* differ"):
            RunLogger(tmp_path / "r", other, resume=True).open()

    def test_failed_step_keeps_the_folder_readable(self, tmp_path):
        model = Backbone()
        with pytest.raises(ZeroDivisionError):
            with RunLogger(tmp_path / "r", model) as log:
                log.snapshot(3)
                1 / 0
        run = load_run(tmp_path / "r")
        assert run.steps == [0, 3] and run.weight_steps() == []
        with RunLogger(tmp_path / "r", model, resume=True):  # the lock was released
            pass

    def test_disabled_logger_writes_nothing(self, tmp_path):
        with RunLogger(tmp_path / "r", Backbone(), enabled=False) as log:
            log.snapshot(1, tag="last")
            log.log_metrics(1, test_acc=0.1)
        assert not (tmp_path / "r").exists()

    def test_trainers_model_is_found_too(self, tmp_path):
        net = BlockoutNet("hard-learned", (3, 8, 8), 5, nodes=6, depth=1, clusters=2)
        parts = find_blockout_parts(net)
        assert [n for n, _ in parts.node_sets] == net.set_names
        with RunLogger(tmp_path / "r", net) as log:
            log.snapshot(1, tag=["best", "last"])
        meta = fmt.read_run(tmp_path / "r").to_json()
        mine = net.topology()
        assert meta["topology"]["node_sets"] == mine["node_sets"] and meta["topology"]["layers"] == mine["layers"]


class TestLightning:
    def test_callback_writes_a_run_folder(self, tmp_path):
        pytest.importorskip("lightning")
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.save_hyperparameters()
                self.net = Backbone()

            def training_step(self, batch, _):
                x, y = batch
                loss = nn.functional.cross_entropy(self.net(x), y)
                self.log("train_loss", loss, on_step=False, on_epoch=True)
                return loss

            def validation_step(self, batch, _):
                x, y = batch
                self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(64, 7, generator=g), torch.arange(64) % 4)
        loader = torch.utils.data.DataLoader(data, batch_size=16)
        torch.manual_seed(0)
        trainer = L.Trainer(max_epochs=2, callbacks=[BlockoutCallback(tmp_path / "run", class_names=list("abcd"))],
                            accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(Module(), loader, loader)
        run = load_run(tmp_path / "run")
        assert [(r["step"], r["epoch"]) for r in run.metrics] == [(4, 1), (8, 2)]
        assert all("train_loss" in r and r["test_acc"] == r["val_acc"] for r in run.metrics)
        assert run.steps == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # 8 steps: every step (about 30 per run)
        tags = {e["step"]: e["tags"] for e in run.snapshot_entries if e["tags"]}
        assert "last" in tags[8] and any("best" in t for t in tags.values())
        assert run.config["epochs"] == 2 and run.config["method"] == "hard-learned"

    def test_an_existing_folder_is_one_user_error(self, tmp_path):
        """Regression: the callback kept its RunLogger in ``self.log``, which Lightning's hook
        dispatch resolved to ``LightningModule.log``, so a refused folder ended in a second
        traceback (AttributeError: '__exit__') instead of the one UserError."""
        pytest.importorskip("lightning")
        from blockout.errors import UserError
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = Backbone()

            def training_step(self, batch, _):
                return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        data = torch.utils.data.TensorDataset(torch.randn(16, 7), torch.arange(16) % 4)
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "something").write_text("x")
        trainer = L.Trainer(max_epochs=1, callbacks=[BlockoutCallback(tmp_path / "run", class_names=list("abcd"))],
                            accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        with pytest.raises(UserError, match="already exists"):
            trainer.fit(Module(), loader)
        assert not (tmp_path / "run" / "run.json").exists()  # nothing of a run written into it

    def test_a_resumed_fit_with_accumulation_keeps_the_recipe_step(self, tmp_path):
        """Regression: the callback read ``global_step`` at fit start, before Lightning restores
        it from the checkpoint, so the first accumulating batch of a resumed fit counted as an
        optimiser step: the head's schedule ran one step ahead of the Trainer (9 for 8)."""
        pytest.importorskip("lightning")
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(7, 8)
                self.head = BlockoutHead(8, 4, hidden=(6,), clusters=2, method="hard-budgeted", epochs=4, log=None)

            def training_step(self, batch, _):
                return nn.functional.cross_entropy(self.head(self.body(batch[0])), batch[1]) + self.head.extra_loss()

            def configure_optimizers(self):  # the README's: all of the module, θ at 10 × lr
                return torch.optim.Adam(self.head.param_groups(1e-2, model=self))

        data = torch.utils.data.TensorDataset(torch.randn(48, 7), torch.arange(48) % 4)
        loader = torch.utils.data.DataLoader(data, batch_size=8)  # 6 batches, 2 optimiser steps an epoch
        options = dict(max_epochs=4, accumulate_grad_batches=4, accelerator="cpu", logger=False,
                       enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        torch.manual_seed(0)
        first = L.Trainer(max_steps=4, callbacks=[BlockoutCallback(tmp_path / "run")], **options)
        first.fit(Module(), loader)  # stopped after 2 of 4 epochs, with a checkpoint
        (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
        module = Module()
        second = L.Trainer(callbacks=[BlockoutCallback(tmp_path / "run", resume=True)], **options)
        second.fit(module, loader, ckpt_path=ckpt)
        assert second.global_step == 8 and int(module.head.recipe_step) == 8

    def test_a_recipe_head_trains_on_data_of_unknown_length(self, tmp_path):
        """An IterableDataset has no length, so the callback's steps per epoch are a guess (1): the
        head's check for a forgotten start_epoch must not fire, as the callback calls it every epoch."""
        pytest.importorskip("lightning")
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Stream(torch.utils.data.IterableDataset):
            def __iter__(self):
                g = torch.Generator().manual_seed(0)
                for i in range(5):
                    yield torch.randn(4, 7, generator=g), torch.arange(4) % 4

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.head = BlockoutHead(7, 4, hidden=(6,), clusters=2, method="hard-budgeted", epochs=2, log=None)

            def training_step(self, batch, _):
                return nn.functional.cross_entropy(self.head(batch[0]), batch[1]) + self.head.extra_loss()

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        module = Module()
        trainer = L.Trainer(max_epochs=2, callbacks=[BlockoutCallback(tmp_path / "run")], accelerator="cpu",
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(module, torch.utils.data.DataLoader(Stream(), batch_size=None))
        assert trainer.global_step == 10 and int(module.head.recipe_step) == 10

    def test_two_recipe_heads_report_under_their_own_names(self, tmp_path):
        """Regression: with two budgeted heads the second head's epoch metrics replaced the first's
        (both report "multipliers"); several heads report under their module paths."""
        pytest.importorskip("lightning")
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.fine = BlockoutHead(7, 4, hidden=(6,), clusters=2, method="hard-budgeted", epochs=2, log=None)
                self.coarse = BlockoutHead(7, 2, hidden=(6,), clusters=2, method="hard-budgeted", epochs=2, log=None)

            def training_step(self, batch, _):
                x, y = batch
                return (nn.functional.cross_entropy(self.fine(x), y) + nn.functional.cross_entropy(self.coarse(x), y % 2)
                        + self.fine.extra_loss() + self.coarse.extra_loss())

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 7), torch.arange(16) % 4),
                                             batch_size=8)
        trainer = L.Trainer(max_epochs=2, callbacks=[BlockoutCallback(tmp_path / "run", class_names=list("abcd"))],
                            accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(Module(), loader)
        records = fmt.read_metrics(tmp_path / "run")
        assert records and all({"fine.multipliers", "coarse.multipliers"} <= set(r) for r in records)

    @pytest.mark.parametrize("trainer_kw,match", [
        ({"max_epochs": 3}, r"epochs=4\) but Trainer\(max_epochs=3\): give the head"),
        ({}, r"Trainer\(max_epochs=1000\) \(Lightning's default without max_epochs\)"),
    ])
    def test_head_epochs_must_match_the_trainers(self, tmp_path, trainer_kw, match):
        pytest.importorskip("lightning")
        from blockout.lightning import BlockoutCallback, lightning_module

        L = lightning_module()

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.head = BlockoutHead(7, 4, hidden=(6,), clusters=2, method="hard-cocluster", epochs=4, log=None)

            def training_step(self, batch, _):
                return nn.functional.cross_entropy(self.head(batch[0]), batch[1])

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 7), torch.arange(8) % 4))
        trainer = L.Trainer(callbacks=[BlockoutCallback(tmp_path / "run")], accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            **trainer_kw)
        with pytest.raises(ValueError, match=match):
            trainer.fit(Module(), loader)
        assert not (tmp_path / "run").exists()


def test_lightning_missing_is_one_clear_error(monkeypatch):
    import blockout.lightning as bl

    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(bl.__dict__, "BlockoutCallback", raising=False)
    with pytest.raises(ImportError, match=r'pip install "blockout\[lightning\]"'):
        bl.BlockoutCallback  # noqa: B018


def test_runlogger_writes_a_trainconfig_flat_as_the_trainer_does(tmp_path):
    """A TrainConfig given to RunLogger is stored as the trainer stores it (flat options), so
    ``blockout train --resume``-style readers and the analysis see the same keys."""
    from analysis.runformat import read_run
    from blockout import BlockoutHead, RunLogger
    from blockout.config import TrainConfig

    config = TrainConfig(method="hard-learned", clusters=3, epochs=2)
    head = BlockoutHead(8, 4, hidden=(16,), clusters=3)
    with RunLogger(tmp_path / "run", head, config=config) as logger:
        logger.snapshot(0)
    stored = read_run(tmp_path / "run").config
    assert stored == config.to_dict()
    assert not set(stored) & {"data", "model", "optim", "run", "recipe"}
