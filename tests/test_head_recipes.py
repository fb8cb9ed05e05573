"""Our recipes (hard-cocluster, hard-budgeted) as BlockoutHead methods, trained in a user's loop."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from analysis.run import load_run
from analysis.runformat import read_run
from blockout import BlockoutHead, RunLogger
from blockout.config import TrainConfig
from blockout.models import build_model


def toy(n_per_class=16, classes=4, features=12, seed=0):
    """Separable toy features: class c lights up features 3c..3c+2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.3 * torch.randn(len(y), features, generator=g)
    for c in range(classes):
        x[y == c, 3 * c:3 * c + 3] += 2.0
    return x, y


def train(head, epochs, steps, lr=1e-2, seed=0, log=None):
    """The loop of the head's docstring: start_epoch, loss + extra_loss, end_step."""
    torch.manual_seed(seed)
    x, y = toy()
    opt = torch.optim.Adam(head.param_groups(lr=lr))
    batches = torch.arange(len(y)).chunk(steps)
    for epoch in range(epochs):
        head.start_epoch(epoch, steps_per_epoch=steps)
        for idx in batches:
            loss = nn.functional.cross_entropy(head(x[idx]), y[idx]) + head.extra_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            head.end_step()
        if log is not None:
            log(epoch, head.epoch_metrics())
    return head


@pytest.mark.parametrize("preset", ["hard_cocluster", "hard_budgeted"])
def test_same_stack_and_buffers_as_the_trainers_model(preset):
    """A recipe head and our trainer's network of the same recipe: same parameters, buffers and recipes."""
    method = preset.replace("_", "-")
    torch.manual_seed(3)
    net = build_model(getattr(TrainConfig, preset)(epochs=6, nodes=8, depth=2, clusters=3, trunk="identity"), (10,), 4)
    torch.manual_seed(3)
    head = BlockoutHead(10, 4, hidden=(8, 8), clusters=3, method=method, epochs=6)
    a = {k: v for k, v in net.state_dict().items() if not k.startswith("trunk.")}
    b = {k: v for k, v in head.state_dict().items() if k != "recipe_step"}
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert repr(head.recipes) == repr(__import__("blockout.recipes", fromlist=["x"]).build_recipes(
        getattr(TrainConfig, preset)(epochs=6, nodes=8, depth=2, clusters=3)))
    assert head.mask == "union" and head.is_blockout


def test_cocluster_phases_in_a_users_loop():
    logs, metrics = [], {}
    head = BlockoutHead(12, 4, hidden=(16,), clusters=2, method="hard-cocluster", epochs=3, log=logs.append)
    assert head.config.cocluster_at == 1
    seen = []

    def record(epoch, m):
        metrics[epoch] = m
        seen.append((head.plain, bool(head.cocluster_done)))

    train(head, epochs=3, steps=4, log=record)
    # epoch 0 is the plain warm-up; the co-clustering happens once, at the start of epoch 1
    assert seen == [(True, False), (False, True), (False, True)]
    assert len(logs) == 1 and "co-clustering" in logs[0]
    assert "cocluster_classes" in metrics[1] and "cocluster_classes" not in metrics[2]
    classes = np.asarray(metrics[1]["cocluster_classes"])
    assert sorted(np.bincount(classes, minlength=2)) == [2, 2]  # balanced (the preset's signed k-means)
    p = head.node_set_probs()["classes"]
    assert np.array_equal(p.argmax(1), classes)  # θ kept the co-clustered classes
    head.eval()
    with torch.no_grad():
        x, _ = toy()
        assert torch.equal(head(x), head(x))


def test_budget_dual_ascent_and_freeze_in_a_users_loop():
    head = BlockoutHead(12, 4, hidden=(16,), clusters=2, method="hard-budgeted", epochs=4, log=None)
    assert head.config.freeze_after == 2 and set(head.budgets) == {"classifier"}
    mult0 = head.budgets["classifier"].multiplier.clone()
    frozen = []
    train(head, epochs=4, steps=4, log=lambda e, m: frozen.append(
        (not any(p.requires_grad for p in head.theta_parameters()), "multipliers" in m)))
    assert int(head.recipe_step) == 16
    assert not torch.equal(head.budgets["classifier"].multiplier, mult0)  # dual ascent moved them
    assert frozen == [(False, True), (False, True), (True, True), (True, True)]  # frozen from epoch 2 on
    assert set(head.snapshot_arrays()) == {"classifier"}


def test_forgetting_start_epoch_is_one_clear_error():
    head = BlockoutHead(12, 4, hidden=(8,), clusters=2, method="hard-cocluster", epochs=3)
    with pytest.raises(RuntimeError, match=r"call head.start_epoch\(epoch\)"):
        head(torch.randn(2, 12))
    head.eval()
    assert head(torch.randn(2, 12)).shape == (2, 4)  # evaluation needs no schedule
    head.train()
    with pytest.raises(ValueError, match="pass steps_per_epoch"):
        head.start_epoch(0)


def test_start_epoch_called_once_or_one_based_is_one_clear_error():
    """Regression: start_epoch called only before the loop left the co-clustered start in its
    warm-up for good, and a 1-based epoch past the head's epochs was taken, both silently."""
    x, y = toy()
    head = BlockoutHead(12, 4, hidden=(8,), clusters=2, method="hard-cocluster", epochs=3, steps_per_epoch=2, log=None)
    opt = torch.optim.Adam(head.param_groups(lr=1e-2))
    head.start_epoch(0)
    for _ in range(4):  # two epochs without start_epoch(1)
        loss = nn.functional.cross_entropy(head(x), y) + head.extra_loss()
        opt.zero_grad(); loss.backward(); opt.step(); head.end_step()
    with pytest.raises(RuntimeError, match=r"4 optimiser steps since start_epoch\(0\).*start of every epoch"):
        head(x)
    head.start_epoch(2)  # back on schedule
    assert head(x).shape == (64, 4) and bool(head.cocluster_done)
    with pytest.raises(ValueError, match=r"start_epoch\(3\) but .*epochs=3\): epochs count from 0 \(0 \.\. 2\)"):
        head.start_epoch(3)


@pytest.mark.parametrize("kw,match", [
    ({"method": "hard-cocluster"}, "runs on a schedule of epochs: pass epochs="),
    ({"recipe": {"soft_epochs": 1}}, "run on a schedule of epochs"),
    ({"recipe": {"membership_warmup": 2}, "epochs": 3}, "unknown recipe option.*membership_warmup"),
    ({"recipe": {"cocluster_method": "magic"}, "method": "hard-cocluster", "epochs": 3}, "cocluster_method"),
    ({"method": "hard-cocluster", "epochs": 0}, "epochs must be a positive integer"),
    # regression: a co-clustering at or after the last epoch never happened, and the run was a plain network
    ({"method": "hard-cocluster", "epochs": 1}, r"cocluster_at=1 epoch\(s\) of warm-up, so with epochs=1 it never would"),
    ({"method": "hard-cocluster", "epochs": 4, "recipe": {"cocluster_at": 4}}, "train at least 5 epochs"),
])
def test_bad_recipe_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        BlockoutHead(12, 4, hidden=(8,), clusters=2, **kw)


def test_paper_methods_have_no_schedule():
    head = BlockoutHead(12, 4, hidden=(8,), clusters=2)
    assert len(head.recipes) == 0 and "recipe_step" not in head.state_dict()
    head.start_epoch(0)
    head.end_step()
    assert head.extra_loss().item() == 0.0 and head.epoch_metrics() == {} and head.snapshot_arrays() == {}
    head(torch.randn(2, 12))  # no start_epoch needed


def test_recipe_options_on_a_paper_method():
    head = BlockoutHead(12, 4, hidden=(8,), clusters=2, method="hard-learned", recipe={"soft_epochs": 1}, epochs=2,
                        steps_per_epoch=1)
    modes = []
    for epoch in range(2):
        head.start_epoch(epoch)
        modes.append({layer.mode for layer in head.fc.values()})
    assert modes == [{"soft"}, {"hard"}]


def trained_and_reloaded(method, epochs, logs):
    """A 4-epoch recipe head trained ``epochs`` epochs, saved and loaded (weights_only) into a fresh one."""
    make = lambda: BlockoutHead(12, 4, hidden=(16,), clusters=2, method=method, epochs=4,  # noqa: E731
                                log=logs.append)
    buf = io.BytesIO()
    torch.save(train(make(), epochs=epochs, steps=4).state_dict(), buf)
    buf.seek(0)
    again = make()
    again.load_state_dict(torch.load(buf, weights_only=True))
    return again


def test_a_reloaded_head_resumes_its_schedule(tmp_path):
    """state_dict carries the step and the co-clustering flag: reloaded, the head neither repeats nor skips it."""
    logs = []
    again = trained_and_reloaded("hard-cocluster", 2, logs)
    assert int(again.recipe_step) == 8 and bool(again.cocluster_done)
    probs = again.node_set_probs()["classes"]
    again.start_epoch(2, steps_per_epoch=4)
    assert len(logs) == 1 and not again.plain  # co-clustered once, in the first life
    assert np.array_equal(again.node_set_probs()["classes"], probs)


def test_a_reloaded_budgeted_head_freezes_again_without_announcing_it():
    """Regression: a head reloaded after its freeze logged "memberships frozen" a second time."""
    logs = []
    again = trained_and_reloaded("hard-budgeted", 3, logs)
    probs = again.node_set_probs()
    again.start_epoch(3, steps_per_epoch=4)
    assert sum("frozen" in line for line in logs) == 1
    assert not any(p.requires_grad for p in again.theta_parameters())  # frozen again, quietly
    assert all(np.array_equal(again.node_set_probs()[k], v) for k, v in probs.items())


def test_run_logger_stores_the_recipe(tmp_path):
    head = BlockoutHead(12, 4, hidden=(16,), clusters=2, method="hard-budgeted", epochs=2, log=None)
    model = nn.Sequential(nn.Identity(), head)
    with RunLogger(tmp_path / "run", model) as log:
        train(head, epochs=2, steps=4, log=lambda e, m: log.log_metrics(4 * (e + 1), epoch=e + 1, **m))
        log.snapshot(8)
    run = load_run(tmp_path / "run")
    assert run.config["method"] == "hard-budgeted" and run.config["freeze_after"] == 1
    assert set(run.multipliers(8)) == {"classifier"} and "multipliers" in run.metrics[-1]


def test_run_logger_keeps_the_multipliers_of_every_recipe_head(tmp_path):
    """Regression: with two budgeted heads the snapshots held one ``multiplier__classifier`` (the
    first head's, under a name no layer has) instead of one per head under its layer's name."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fine = BlockoutHead(12, 4, hidden=(8,), clusters=2, method="hard-budgeted", epochs=2, log=None)
            self.coarse = BlockoutHead(12, 2, hidden=(8,), clusters=2, method="hard-budgeted", epochs=2, log=None)

    model = TwoHeads()
    for head, value in ((model.fine, 1.0), (model.coarse, 2.0)):
        for budget in head.budgets.values():
            budget.multiplier.fill_(value)
    with RunLogger(tmp_path / "run", model, class_names=list("abcd")) as log:
        log.snapshot(1)
    run = load_run(tmp_path / "run")
    multipliers = run.multipliers(1)
    assert set(multipliers) == {"fine.classifier", "coarse.classifier"}
    assert set(multipliers) <= {layer.name for layer in read_run(tmp_path / "run").topology.layers}
    assert multipliers["fine.classifier"].tolist() == [1.0] * 4 and multipliers["coarse.classifier"].tolist() == [2.0] * 2
    # regression: `blockout inspect` ran the prefixed names into the role column ("fine.classesclasses")
    from analysis.summary import summarize_run
    from analysis.summary_report import format_summary

    rows = {line.split()[0]: line.split()[1] for line in format_summary(summarize_run(tmp_path / "run")).splitlines()
            if line.startswith("    ") and line.split()[0].startswith(("fine.", "coarse."))}
    assert rows["fine.classes"] == "classes" and rows["coarse.trunk"] == "trunk" and len(rows) == 6


def test_confusion_grouping_learns_from_the_batches_extra_loss_sees():
    """cocluster_source confusion (the preset's with linkage): the head groups the classes by the warm-up's
    soft confusion of the (logits, targets) passed to extra_loss; without them, one clear error."""
    kw = dict(hidden=(16,), clusters=2, method="hard-cocluster", epochs=3, recipe={"cocluster_method": "linkage"},
              log=None)
    head = BlockoutHead(12, 4, **kw)
    assert head.config.cocluster_source == "confusion"
    torch.manual_seed(0)
    x, y = toy()
    opt = torch.optim.Adam(head.param_groups(lr=1e-2))
    for epoch in range(2):
        head.start_epoch(epoch, steps_per_epoch=4)
        for idx in torch.arange(len(y)).chunk(4):
            logits = head(x[idx])
            loss = nn.functional.cross_entropy(logits, y[idx]) + head.extra_loss(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            head.end_step()
    assert bool(head.cocluster_done) and set(head.cocluster_classes.tolist()) <= {0, 1}  # every class assigned

    blind = BlockoutHead(12, 4, **kw)
    with pytest.raises(RuntimeError, match=r"head.extra_loss\(logits, targets\)"):
        train(blind, epochs=2, steps=4)  # extra_loss() without the batch: nothing to group by
    with pytest.raises(ValueError, match="both logits and targets"):
        blind.extra_loss(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"logits \(B, 4\) and integer targets"):
        blind.extra_loss(torch.zeros(2, 3), torch.zeros(2))
