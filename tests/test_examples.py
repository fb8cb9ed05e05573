"""The examples and the README's "Use Blockout in your own model" snippet, run for a few steps.

Each writes a run folder that ``blockout inspect``, ``blockout compare`` and the dashboard open.
"""

import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.run import load_run
from blockout.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOME = str(ROOT / "app" / "Home.py")
STEPS = "6"  # a few small steps: enough for snapshots, metrics and tagged weights


def _example(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three examples' run folders under one checkpoints folder."""
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name, module, extra in (("plain", "plain_loop", []), ("convert", "convert_classifier", ["--pretrain-steps", "2"]),
                                ("lightning", "lightning_loop", [])):
        if name == "lightning":
            pytest.importorskip("lightning")
        out[name] = _example(module).main(["--out", str(root / name), "--steps", STEPS, "--batch-size", "20", *extra])
    return root, out


@pytest.mark.parametrize("name", ["plain", "convert", "lightning"])
def test_example_run_opens_in_inspect_and_compare(runs, name, capsys):
    _, paths = runs
    run = load_run(paths[name])
    assert run.chain == ["trunk", "h1", "classes"] and len(run.class_names) == 10
    assert run.metrics and 0 <= run.metrics[-1]["test_acc"] <= 1 and run.metrics[-1]["step"] == int(STEPS)
    assert run.weight_steps() and run.steps[0] == 0 and run.steps[-1] == int(STEPS)
    assert run.dataset["coarse_labels"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert cli(["inspect", str(paths[name]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "hard-learned" and summary["progress"]["steps_done"] == int(STEPS)
    assert [ns["name"] for ns in summary["node_sets"]] == ["trunk", "h1", "classes"]
    assert cli(["compare", str(paths[name]), "--reference", "coarse", "--permutations", "19", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_classes"] == 10


def test_steps_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BLOCKOUT_EXAMPLE_STEPS", "7")
    assert _example("toy_data").default_steps(600) == 7


def test_dashboard_opens_an_example_run(runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root, paths = runs
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(root))
    monkeypatch.setenv("BLOCKOUT_RUN", str(paths["plain"]))
    at = AppTest.from_file(HOME, default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "plain" in at.main.title[0].value
    for page in ("views/branch_tree.py", "views/weight_blocks.py", "views/emergence.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert len(at.get("plotly_chart")) >= 1, page


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- own-model snippet[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "the README lost its own-model snippet"
    return m.group(1)


def readme_recipe_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- recipe snippet[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "the README lost its recipe snippet"
    return textwrap.dedent(m.group(1))


def test_readme_recipe_snippet_trains_the_backbone_and_runs_the_schedule():
    """Regression: the recipe snippet's optimiser held the head's parameters only
    (``head.param_groups(lr)``), so a user's backbone silently never trained."""
    from blockout import BlockoutHead

    toy, conv = _example("toy_data"), _example("convert_classifier")
    torch.manual_seed(0)
    (x, y), _ = toy.make_splits(train_per_class=2, test_per_class=1)
    loader = [(x[i:i + 5], y[i:i + 5]) for i in range(0, len(y), 5)]  # 4 batches an epoch
    model = conv.TinyResNet(10, widths=(8, 16))
    before = [p.detach().clone() for p in model.stem.parameters()]
    namespace = {"torch": torch, "BlockoutHead": BlockoutHead, "model": model, "loader": loader,
                 "class_names": toy.CLASSES, "epochs": 3}
    exec(compile(readme_recipe_snippet(), "README.md recipe snippet", "exec"), namespace)
    head = model.fc
    assert head.method == "hard-cocluster" and int(head.recipe_step) == 12 and bool(head.cocluster_done)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.stem.parameters()))  # the backbone trained
    theta = next(g for g in namespace["optimizer"].param_groups if g["name"] == "theta")
    assert theta["lr"] == pytest.approx(1e-2)


def test_param_groups_refuse_a_model_without_the_head():
    from blockout import BlockoutHead

    head = BlockoutHead(4, 3, hidden=(5,), clusters=2)
    with pytest.raises(ValueError, match="not among its modules"):
        head.param_groups(1e-3, model=torch.nn.Linear(4, 3))


def test_readme_snippet_adds_at_most_ten_lines():
    added = [line for line in readme_snippet().splitlines() if re.search(r"#\s*\+", line)]
    assert 1 <= len(added) <= 10, added


def test_readme_snippet_runs_and_writes_a_run(tmp_path, monkeypatch, capsys):
    """The README block, exactly, with a user's model, loader, class names and evaluate()."""
    toy, conv = _example("toy_data"), _example("convert_classifier")
    torch.manual_seed(0)
    (x, y), (xt, yt) = toy.make_splits(train_per_class=6, test_per_class=4)
    order = torch.randperm(len(y))
    loader = [(x[order[i:i + 3]], y[order[i:i + 3]]) for i in range(0, len(y), 3)]  # 20 batches

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        model.train()
        return acc

    monkeypatch.chdir(tmp_path)
    namespace = {"model": conv.TinyResNet(10, widths=(8, 16)), "loader": loader, "class_names": toy.CLASSES, "epochs": 2,
                 "evaluate": evaluate}
    exec(compile(readme_snippet(), "README.md snippet", "exec"), namespace)
    run = load_run(tmp_path / "checkpoints" / "my-model")
    assert run.chain == ["trunk", "h1", "h2", "classes"] and run.class_names == toy.CLASSES
    assert [r["step"] for r in run.metrics] == [20, 40] and all(0 <= r["test_acc"] <= 1 for r in run.metrics)
    assert run.steps == [0, 20, 40] and run.weight_steps() == [40]
    capsys.readouterr()
    assert cli(["inspect", str(tmp_path / "checkpoints" / "my-model"), "--permutations", "0"]) == 0
    summary = capsys.readouterr().out
    assert "None" not in summary  # regression: unknown config fields printed as raw None
    assert "epochs 2" in summary and "10 classes" in summary


@pytest.mark.parametrize("script", ["plain_loop.py", "convert_classifier.py"])
def test_an_example_run_again_on_its_folder_is_one_line(tmp_path, script):
    """Regression: running an example a second time on the same --out printed a traceback."""
    import subprocess

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("{}")  # raw run.json: a folder that is taken
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path / "out"), "--steps", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "error:" in proc.stderr


@pytest.mark.parametrize("module,args,match", [
    ("plain_loop", ["--method", "magic"], "argument --method: invalid choice: 'magic'"),
    ("plain_loop", ["--steps", "0"], "argument --steps: expected a whole number >= 1, got '0'"),
    ("convert_classifier", ["--pretrain-steps", "-1"], "argument --pretrain-steps: expected a whole number >= 0"),
    ("convert_classifier", ["--batch-size", "x"], "argument --batch-size: expected a whole number >= 1, got 'x'"),
])
def test_an_examples_bad_option_is_one_line(tmp_path, capsys, module, args, match):
    """Regression: a bad --method or --steps 0 ended in a BlockoutHead traceback (exit 1)."""
    with pytest.raises(SystemExit) as exc:
        _example(module).main(["--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and re.search(match, err) and err.strip().count("\n") == 0, err
    assert not (tmp_path / "out").exists()


def test_a_recipe_schedule_that_does_not_fit_the_steps_is_one_line(tmp_path):
    """Regression: hard-cocluster over one epoch (--steps 10) never left its plain warm-up, silently."""
    from blockout.errors import UserError

    with pytest.raises(UserError, match=r"--steps 10 \(1 epoch\(s\) of 20 steps\): .*never would: train at least 2"):
        _example("plain_loop").main(["--out", str(tmp_path / "out"), "--steps", "10", "--method", "hard-cocluster"])
    assert not (tmp_path / "out").exists()


def test_an_examples_batch_larger_than_the_data_is_refused(tmp_path):
    """Regression: --batch-size above the 2000 training images made the batch generator loop forever."""
    from blockout.errors import UserError

    with pytest.raises(UserError, match="--batch-size must be between 1 and 2000"):
        _example("plain_loop").main(["--out", str(tmp_path / "out"), "--batch-size", "2001"])
    assert not (tmp_path / "out").exists()  # refused before the run folder is made


def test_the_examples_run_our_recipes(tmp_path):
    """`--method hard-cocluster` in the plain loop and `hard-budgeted` under Lightning: the head's
    schedule runs in a user's loop and the run folder records it."""
    out = _example("plain_loop").main(["--out", str(tmp_path / "cc"), "--steps", "60", "--batch-size", "50",
                                       "--method", "hard-cocluster"])
    run = load_run(out)
    assert run.config["method"] == "hard-cocluster" and run.config["cocluster_at"] == 1
    switched = [r for r in run.metrics if "cocluster_classes" in r]
    assert [r["epoch"] for r in switched] == [2]  # reported once, the epoch after the warm-up
    classes = run.probs()["classes"]  # (10, 4): P = 0.95 in the class's cluster, 0.15 elsewhere at the switch
    assert np.array_equal(classes.argmax(1), switched[0]["cocluster_classes"])
    assert cli(["inspect", str(out), "--permutations", "0"]) == 0

    pytest.importorskip("lightning")
    out = _example("lightning_loop").main(["--out", str(tmp_path / "budget"), "--steps", "80", "--batch-size", "50",
                                           "--method", "hard-budgeted"])
    run = load_run(out)
    assert run.config["method"] == "hard-budgeted" and run.config["freeze_after"] == 1
    assert set(run.multipliers()) == {"classifier"} and run.multipliers()["classifier"].any()  # dual ascent ran
    assert all("multipliers" in r for r in run.metrics)
