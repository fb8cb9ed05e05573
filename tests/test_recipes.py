"""Recipe plug-ins (blockout.recipes): each recipe's hooks, the state round trip, a user's own recipe
through the trainer, the loop free of recipe branches, and the nested config that loads old flat runs."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from analysis.runformat import read_run, write_run
from blockout import train as train_module
from blockout.checkpoint import load_train_state
from blockout.config import (DataConfig, EpochShare, ModelConfig, OptimConfig, PerCluster, RecipeConfig, RunConfig,
                             TrainConfig, flat_config)
from blockout.emergence import emergence_loss
from blockout.errors import UserError
from blockout.models import build_model
from blockout.recipes import (CategoricalMemberships, CoclusteredStart, ConnectionBudgetRecipe, FreezeAndRescue,
                              MembershipWarmup, Recipe, RecipeList, SoftWarmPhase, TrainContext, build_recipes)
from blockout.train import make_optimizer, resume_config, train
from tiny_runs import tiny_options, write_hierarchy  # noqa: E402  (tests/ is on sys.path)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HIERARCHY = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2"]}


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"clusters": 3, "nodes": 8, "depth": 2, "method": "hard-learned", **kw})


def built(config: TrainConfig, classes: int = 4):
    torch.manual_seed(0)
    recipes = build_recipes(config)
    model = build_model(config, (6,), classes, recipes=recipes)
    ctx = TrainContext(model=model, config=config, optimizer=make_optimizer(model, config), steps_per_epoch=5,
                       log=lambda msg: None)
    return model, recipes, ctx


def kinds(recipes) -> list[type]:
    return [type(r) for r in recipes]


# ------------------------------------------------------------------------------------------
# which recipes a config picks


class TestBuildRecipes:
    @pytest.mark.parametrize("method", ["baseline", "fc", "dropout", "soft-learned", "hard-fixed", "hard-learned"])
    def test_paper_methods_use_no_recipe(self, method):
        assert len(build_recipes(cfg(method=method))) == 0

    def test_plain_methods_get_none_even_with_options(self):
        assert len(build_recipes(cfg(method="fc", soft_epochs=1, budget_rho=0.5, freeze_after=1))) == 0

    def test_each_option_picks_its_recipe_in_hook_order(self):
        config = cfg(membership_warmup=1, soft_epochs=1, hidden_membership="categorical", cocluster_at=1,
                     freeze_after=2, budget_rho=0.5)
        assert kinds(build_recipes(config)) == [MembershipWarmup, SoftWarmPhase, CategoricalMemberships,
                                                CoclusteredStart, FreezeAndRescue, ConnectionBudgetRecipe]

    def test_named_recipes(self):
        assert kinds(build_recipes(TrainConfig.hard_budgeted(epochs=4))) == [
            CategoricalMemberships, FreezeAndRescue, ConnectionBudgetRecipe]
        assert kinds(build_recipes(TrainConfig.hard_cocluster(epochs=3))) == [CategoricalMemberships, CoclusteredStart]

    def test_names_are_unique(self):
        with pytest.raises(ValueError, match="unique"):
            RecipeList([MembershipWarmup(1), MembershipWarmup(2)])


# ------------------------------------------------------------------------------------------
# each recipe's hooks


class TestHooks:
    def test_membership_warmup_zeroes_theta_lr_only_in_its_epochs(self):
        model, _, ctx = built(cfg())
        recipe = MembershipWarmup(2)
        lrs = {g["name"]: g["lr"] for g in ctx.optimizer.param_groups}
        assert lrs["theta"] > 0
        for epoch, zero in ((0, True), (1, True), (2, False)):
            for g in ctx.optimizer.param_groups:
                g["lr"] = g["base_lr"]
            ctx.epoch = epoch
            recipe.before_step(ctx)
            got = {g["name"]: g["lr"] for g in ctx.optimizer.param_groups}
            assert (got["theta"] == 0.0) == zero
            assert got["weights"] == lrs["weights"]  # the weights always learn

    def test_soft_warm_phase_switches_mode_by_epoch(self):
        model, _, ctx = built(cfg())
        recipe = SoftWarmPhase(2)
        modes = []
        for epoch in range(4):
            ctx.epoch = epoch
            recipe.on_epoch_start(ctx)
            modes.append({layer.mode for layer in model.fc.values()})
        assert modes == [{"soft"}, {"soft"}, {"hard"}, {"hard"}]
        soft_model, _, soft_ctx = built(cfg(method="soft-learned"))
        SoftWarmPhase(2).on_epoch_start(TrainContext(model=soft_model, config=soft_ctx.config, epoch=5))
        assert {layer.mode for layer in soft_model.fc.values()} == {"soft"}  # a soft method stays soft

    def test_categorical_temperature_follows_progress(self):
        config = cfg(hidden_membership="categorical", temperature=2.0, temperature_end=0.5, epochs=4)
        model, recipes, ctx = built(config)
        (recipe,) = recipes
        temps = []
        for step in (0, 10, 20):  # 5 steps per epoch, 4 epochs: progress 0, 0.5, 1
            ctx.step = step
            recipe.before_step(ctx)
            temps.append(model.node_sets["h1"].temperature)
        assert temps == pytest.approx([2.0, 1.0, 0.5])

    def test_categorical_usage_terms_use_each_sets_weight_and_skip_plain_or_frozen(self):
        config = cfg(hidden_membership="categorical", class_membership="categorical", usage_weight=0.5,
                     class_usage_weight=2.0, class_init_noise=2.0, membership_init_noise=3.0)
        model, recipes, ctx = built(config)
        (recipe,) = recipes
        terms = recipe.extra_loss(ctx)
        want = [0.5 * model.node_sets["h1"].usage_loss(), 0.5 * model.node_sets["h2"].usage_loss(),
                2.0 * model.node_sets["classes"].usage_loss()]
        assert len(terms) == 3 and all(torch.equal(a, b) for a, b in zip(terms, want))
        model.plain = True
        assert recipe.extra_loss(ctx) == []
        model.plain = False
        model.node_sets["h1"].freeze()
        assert len(recipe.extra_loss(ctx)) == 2

    def test_budget_attaches_penalises_and_ascends(self):
        config = cfg(hidden_membership="categorical", budget_rho=0.2, budget_step=0.5, budget_max_step=1.0)
        model, recipes, ctx = built(config)
        budget = recipes.recipes[-1]
        assert isinstance(budget, ConnectionBudgetRecipe)
        assert list(model.budgets) == ["classifier"] and "budgets.classifier.multiplier" in model.state_dict()
        before = model.budgets["classifier"].multiplier.clone()
        terms = budget.extra_loss(ctx)
        assert len(terms) == 1 and terms[0].requires_grad
        budget.after_step(ctx)  # dense random start: density > rho, so the multipliers rise
        assert (model.budgets["classifier"].multiplier > before).any()
        assert set(budget.snapshot_arrays(model)) == {"classifier"}
        summary = budget.epoch_metrics(ctx)["multipliers"]["classifier"]
        assert {"mean", "max", "rho", "density"} <= set(summary) and summary["density"] > 0.2
        model.plain = True  # warm-up of a co-clustered start: no penalty, no ascent
        assert budget.extra_loss(ctx) == []

    def test_freeze_and_rescue_from_its_epoch_and_on_resume(self):
        model, _, ctx = built(cfg())
        recipe = FreezeAndRescue(after=2, rescue=True)
        theta = [p for p in model.theta_parameters() if p.requires_grad]
        assert theta
        ctx.epoch = 1
        recipe.on_epoch_start(ctx)
        assert all(p.requires_grad for p in theta)
        ctx.epoch = 2
        recipe.on_epoch_start(ctx)
        assert not any(p.requires_grad for p in model.theta_parameters())
        fresh, _, fresh_ctx = built(cfg())
        fresh_ctx.epochs_done = 1
        recipe.on_resume(fresh_ctx)
        assert any(p.requires_grad for p in fresh.theta_parameters())
        fresh_ctx.epochs_done = 2
        recipe.on_resume(fresh_ctx)
        assert not any(p.requires_grad for p in fresh.theta_parameters())

    def test_coclustered_start_phases_buffers_blend_and_metric(self):
        config = cfg(hidden_membership="categorical", cocluster_at=1, cocluster_anneal_epochs=2,
                     cocluster_method="signed")
        model, recipes, ctx = built(config)
        recipe = next(r for r in recipes if isinstance(r, CoclusteredStart))
        assert not bool(model.cocluster_done) and model.cocluster_classes.tolist() == [-1] * 4
        ctx.epoch = 0
        recipe.on_epoch_start(ctx)
        assert model.plain and not bool(model.cocluster_done)
        ctx.epoch = 1
        recipe.on_epoch_start(ctx)
        assert not model.plain and bool(model.cocluster_done)
        classes = model.cocluster_classes.tolist()
        assert min(classes) >= 0
        P = model.node_sets["h2"].probs.detach()
        assert torch.allclose(P.max(1).values, P.max(1).values.new_full((8,), P.max()))  # sharp, one cluster each
        theta = model.node_sets["h2"].theta.detach().clone()
        recipe.on_epoch_start(ctx)  # not repeated
        assert torch.equal(theta, model.node_sets["h2"].theta.detach())
        blends = []
        for step in range(5, 16, 5):  # 5 steps per epoch: the fade runs over epochs 1 and 2
            ctx.step = step
            recipe.before_step(ctx)
            blends.append(model.mask_blend)
        assert blends == pytest.approx([0.9, 0.4, 0.0])
        ctx.epochs_done = 2
        assert recipe.epoch_metrics(ctx) == {"cocluster_classes": classes, "cocluster_k": len(set(classes))}
        ctx.epochs_done = 3
        assert recipe.epoch_metrics(ctx) == {}

    def test_recipe_list_sums_every_term_once_like_the_old_glue(self):
        """The loss the loop trains on is bit for bit the loss of the earlier emergence glue."""
        config = cfg(hidden_membership="categorical", class_membership="categorical", budget_rho=0.3,
                     class_usage_weight=0.7, membership_init_noise=3.0, class_init_noise=2.0)
        model, recipes, ctx = built(config)
        loss = torch.tensor(1.25)
        old, _ = emergence_loss(model, config, ctx.progress)
        assert torch.equal(recipes.total_loss(loss, ctx), loss + old)
        assert recipes.total_loss(loss, TrainContext(model=model, config=config)) is not loss
        assert RecipeList().total_loss(loss, ctx) is loss


# ------------------------------------------------------------------------------------------
# a user's own recipe through the trainer: the loop calls hooks, knows no recipe


class Counter(Recipe):
    """Counts hook calls; adds a constant loss term; saves its count across a resume."""

    name = "counter"

    def __init__(self):
        self.calls = {"on_build": 0, "on_epoch_start": 0, "before_step": 0, "after_forward": 0, "extra_loss": 0,
                      "after_step": 0, "on_resume": 0}
        self.steps_seen = 0

    def on_build(self, model):
        self.calls["on_build"] += 1
        model.register_buffer("counter_seen", torch.zeros((), dtype=torch.long))

    def on_resume(self, ctx):
        self.calls["on_resume"] += 1

    def on_epoch_start(self, ctx):
        self.calls["on_epoch_start"] += 1

    def before_step(self, ctx):
        self.calls["before_step"] += 1
        assert ctx.step == self.steps_seen  # the step about to run

    def after_forward(self, ctx, logits, targets):
        self.calls["after_forward"] += 1
        assert logits.shape == (len(targets), ctx.model.num_classes) and ctx.step == self.steps_seen

    def extra_loss(self, ctx):
        self.calls["extra_loss"] += 1
        return torch.tensor(0.0)  # leaves training unchanged (x + 0.0 == x)

    def after_step(self, ctx):
        self.calls["after_step"] += 1
        self.steps_seen += 1
        ctx.model.counter_seen += 1

    def epoch_metrics(self, ctx):
        return {"counter_steps": self.steps_seen}

    def snapshot_arrays(self, model):
        return {"counter": np.array([float(self.steps_seen)], dtype=np.float32)}

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = int(state["steps_seen"])


@pytest.fixture(scope="module")
def hier(tmp_path_factory):
    return write_hierarchy(tmp_path_factory, HIERARCHY)


def tiny(hier, out, **kw):
    """8 classes x 4 images of 8x8: 4 steps per epoch at batch 8."""
    return TrainConfig(**tiny_options(hier, out, **{"nodes": 12, "epochs": 2, "method": "hard-learned", **kw}))


def metrics(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rf.read_jsonl(run_dir / rf.METRICS)]


class TestUserRecipe:
    def test_custom_recipe_plugs_into_the_loop_and_resumes(self, hier, tmp_path):
        counter = Counter()
        result = train(tiny(hier, tmp_path / "a"), recipes=[counter])
        steps = result.step
        assert steps == 8
        assert counter.calls == {"on_build": 1, "on_epoch_start": 2, "before_step": steps, "after_forward": steps,
                                 "extra_loss": steps, "after_step": steps, "on_resume": 0}
        records = rf.read_jsonl(tmp_path / "a" / rf.METRICS)
        assert [r["counter_steps"] for r in records] == [4, 8]
        state = load_train_state(tmp_path / "a" / rf.TRAIN_STATE)
        assert state["recipes"] == {"counter": {"steps_seen": 8}}
        assert int(state["model"]["counter_seen"]) == 8
        snaps = rf.read_json(tmp_path / "a" / "snapshots" / rf.SNAPSHOT_INDEX, "index")["snapshots"]
        last = rf.load_npz(tmp_path / "a" / "snapshots" / snaps[-1]["file"])
        assert last["multiplier__counter"].tolist() == [8.0]

        # the same run stopped after step 3 and resumed: the recipe's state comes back, training is identical
        def stop_at_3(step, model):
            if step == 3:
                raise KeyboardInterrupt

        first = Counter()
        assert train(tiny(hier, tmp_path / "b"), on_step=stop_at_3, recipes=[first]).status == "interrupted"
        second = Counter()
        assert train(resume_config(tmp_path / "b"), resume=True, recipes=[second]).status == "finished"
        assert second.calls["on_resume"] == 1 and second.calls["before_step"] == 5
        assert second.steps_seen == 8
        assert metrics(tmp_path / "a") == metrics(tmp_path / "b")

    def test_plain_run_saves_no_recipe_state(self, hier, tmp_path):
        train(tiny(hier, tmp_path / "c", epochs=1))
        assert "recipes" not in load_train_state(tmp_path / "c" / rf.TRAIN_STATE)


def test_training_loop_has_no_recipe_branch():
    """The loop knows recipes only through their hooks: no recipe option, no probing of the model."""
    src = inspect.getsource(train_module._Session)
    for word in ("cocluster", "budget", "freeze", "soft_epochs", "membership_warmup", "temperature", "usage",
                 "mask_blend", "plain"):
        assert word not in src, word
    assert not re.search(r"(hasattr|getattr)\((self\.)?model\b", inspect.getsource(train_module))
    loop = inspect.getsource(train_module._Session.run)
    assert len(loop.splitlines()) <= 60  # one screen


# ------------------------------------------------------------------------------------------
# the nested config


class TestNestedConfig:
    def test_sections_hold_every_option_once(self):
        names = TrainConfig.field_names()
        per_section = [f.name for section in TrainConfig().sections() for f in dataclasses.fields(section)]
        assert names == per_section and len(names) == len(set(names))
        config = TrainConfig()
        assert config.optim.epochs == config.epochs == OptimConfig().epochs
        assert isinstance(config.data, DataConfig) and isinstance(config.run, RunConfig)

    def test_sections_and_flat_options_build_the_same_config(self):
        a = TrainConfig(model=ModelConfig(method="fc", nodes=64), optim=OptimConfig(epochs=3),
                        recipe=RecipeConfig(soft_epochs=1))
        b = TrainConfig(method="fc", nodes=64, epochs=3, soft_epochs=1)
        assert a == b and a.to_dict() == b.to_dict()
        assert TrainConfig.from_dict(a.to_nested()) == a
        c = a.replace(epochs=5, run=RunConfig(seed=3))
        assert (c.epochs, c.seed, a.epochs) == (5, 3, 3)  # a copy; the original is unchanged

    def test_sections_are_not_shared_with_the_caller(self):
        optim = OptimConfig(epochs=3)
        config = TrainConfig(optim=optim)
        optim.epochs = 7
        assert config.epochs == 3

    def test_validation_still_names_the_option(self):
        with pytest.raises(UserError, match="epochs must be at least 1"):
            TrainConfig(optim=OptimConfig(epochs=0))
        with pytest.raises(UserError, match="unknown option.*in section 'optim'"):
            TrainConfig.from_dict({"optim": {"nodes": 3}})
        with pytest.raises(UserError, match="section 'model' must be a JSON object"):
            TrainConfig.from_dict({"model": 3})

    def test_typed_presets(self):
        config = TrainConfig.hard_budgeted(clusters=20, epochs=30)
        assert config.budget_rho == pytest.approx(1 / 20) and config.freeze_after == 15
        assert TrainConfig.hard_cocluster(epochs=9).cocluster_at == 3
        assert TrainConfig.hard_cocluster(epochs=4, cocluster_at=2).cocluster_at == 2  # explicit wins
        assert EpochShare(2, 3).of(1) == 1 and PerCluster(2.0).of(4) == 0.5

    def test_demo_preset_is_the_packaged_demo(self):
        demo = json.loads((ROOT / "blockout" / "configs" / "demo.json").read_text())
        config = TrainConfig.demo()
        assert config == TrainConfig.from_dict(demo)
        assert (config.method, config.clusters, config.epochs) == ("hard-cocluster", 20, 30)
        assert TrainConfig.demo(epochs=3).epochs == 3

    @pytest.mark.parametrize("run", ["demo", "fashion-mnist"])
    def test_bundled_flat_runs_load(self, run):
        flat = read_run(ROOT / "checkpoints" / run).config
        assert not set(flat) & {"data", "model", "optim", "run", "recipe"}  # written flat
        config = TrainConfig.from_dict({"augment": "none", **flat})
        assert config.to_dict() == {**config.to_dict(), **{k: v for k, v in flat.items() if k != "snapshot_every"}}
        assert flat_config(flat) == flat
        assert TrainConfig.from_dict(config.to_nested()) == config

    def test_resume_reads_a_flat_or_a_nested_run_json(self, tmp_path):
        config = TrainConfig(method="fc", epochs=2, out=str(tmp_path / "r"))
        for form in (config.to_dict(), config.to_nested()):
            run_dir = tmp_path / "r"
            run_dir.mkdir(exist_ok=True)
            record = dataclasses.replace(read_run(ROOT / "checkpoints" / "demo"), config=form)
            write_run(run_dir, record)  # run.json alone: a run killed before its first checkpoint
            assert resume_config(run_dir, {"epochs": 4}) == config.replace(epochs=4)

    def test_nested_config_file_with_flag_overrides(self, tmp_path):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"model": {"method": "dropout"}, "optim": {"epochs": 3, "lr": 0.1}}))
        config = TrainConfig.from_json_file(path, {"epochs": 5})
        assert (config.method, config.epochs, config.lr) == ("dropout", 5, 0.1)

    def test_train_command_reads_a_nested_config_file_and_its_flags_win(self, tmp_path):
        from blockout.cli import build_parser
        from blockout.cmd_train import config_from_args

        path = tmp_path / "c.json"
        path.write_text(json.dumps({"model": {"method": "hard-learned", "clusters": 4},
                                    "optim": {"epochs": 3}, "recipe": {"soft_epochs": 1}}))
        args = build_parser().parse_args(["train", "--config", str(path), "--epochs", "5", "--soft-epochs", "2"])
        config = config_from_args(args)
        assert (config.clusters, config.epochs, config.soft_epochs) == (4, 5, 2)
        assert kinds(build_recipes(config)) == [SoftWarmPhase]


def test_a_config_file_giving_an_option_flat_and_nested_differently_is_refused(tmp_path):
    """Regression: {"model": {"nodes": 32}, "nodes": 64} silently trained with 64."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"nodes": 32}, "nodes": 64}))
    with pytest.raises(UserError, match="'nodes' is given twice"):
        TrainConfig.from_json_file(path)
    path.write_text(json.dumps({"model": {"nodes": 32}, "nodes": 32}))
    assert TrainConfig.from_json_file(path, {"nodes": 16}).nodes == 16  # the same value twice is fine; flags win
