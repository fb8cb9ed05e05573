"""`blockout train --help` in sections (data, model, the paper's method, optimisation, run, our emergence
options), each default printed once (issue 8)."""

import re

from blockout.cli import FLAG_GROUPS, build_parser
from blockout.config import TrainConfig

SECTIONS = ["data", "model", "the paper's method", "optimisation", "run", "our emergence options"]


def help_text(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def sections(text: str) -> dict[str, str]:
    """``{section title: its text}`` from argparse's help (titles are unindented lines ending in ':')."""
    out, title = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z][^:]*):", line)
        if m:
            title = m.group(1)
            out[title] = ""
        elif title is not None:
            out[title] += line + "\n"
    return out


def flag_entries(section: str) -> dict[str, str]:
    """``{--flag: its help text}`` within one section."""
    out, flag = {}, None
    for line in section.splitlines():
        m = re.match(r"  (--[a-z0-9-]+)", line)
        if m:
            flag = m.group(1)
            out[flag] = line[len(m.group(0)):]
        elif flag is not None:
            out[flag] += " " + line.strip()
    return out


def test_every_field_in_exactly_one_group():
    names = [n for _, _, group in FLAG_GROUPS for n in group]
    assert set(TrainConfig.field_names()) <= set(names)
    assert len(names) == len(set(names))
    assert [title for title, _, _ in FLAG_GROUPS] == SECTIONS


def test_train_help_grouped_with_each_default_once():
    secs = sections(help_text("train"))
    found = [t for t in secs if t in SECTIONS]
    assert found == SECTIONS and "other options" not in secs
    flags = {t: flag_entries(secs[t]) for t in SECTIONS}
    assert "--method" in flags["the paper's method"] and "--clusters" in flags["the paper's method"]
    assert "--cocluster-at" in flags["our emergence options"] and "--budget-rho" in flags["our emergence options"]
    assert "--lr" in flags["optimisation"] and "--seed" in flags["run"] and "--dataset" in flags["data"]
    total = 0
    for entries in flags.values():
        for flag, text in entries.items():
            total += 1
            assert text.lower().count("default") == 1, (flag, text)
            assert "default: None" not in text, (flag, text)
    assert total == len(TrainConfig.field_names())
    # the regressions: help texts that name their own default got a second "(default: None)"
    assert "(default: None)" not in help_text("train")
    # regression: --cocluster-at still described the round-2 co-clustering ("balanced spectral"),
    # whatever --cocluster-method was
    at = flags["our emergence options"]["--cocluster-at"]
    assert "spectral" not in at and "--cocluster-method" in at
    out = flags["run"]["--out"]
    assert "checkpoints/<dataset>-<method>-s<seed>" in out


def test_reproduce_help_grouped_without_its_own_flags():
    secs = sections(help_text("reproduce"))
    assert [t for t in secs if t in SECTIONS] == SECTIONS
    assert "--method" not in flag_entries(secs["the paper's method"])  # reproduce has --methods instead


def test_make_demo_says_how_to_run_blockout():
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["make", "-n", "demo"], capture_output=True, text=True, cwd=root, timeout=60).stdout
    lines = out.splitlines()
    train = next(i for i, l in enumerate(lines) if "blockout.cli demo" in l)
    dash = next(i for i, l in enumerate(lines) if "blockout.cli dashboard" in l)
    hint = "\n".join(lines[train:dash])  # after the training, before the (blocking) dashboard
    assert ".venv/bin/blockout" in hint and "source .venv/bin/activate" in hint


def test_readme_first_training_example_and_no_outside_documents():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    first = next(l for l in text.splitlines() if l.startswith("blockout train "))
    assert "--method hard-cocluster" in first  # a recipe that forms branches comes first
    assert "P drifts toward 1, no branches" in text
    assert "bit-identically on the same\n  machine and library build" in text
    # the README is read on its own: no design notes or shared folders outside the repository
    import re

    assert "DESIGN" not in text and "shared/" not in text
    # no link leaves the repository (a "../" inside an example of a hostile run name is not a link)
    assert not re.findall(r"\]\((?:\.\./|/)[^)]*\)", text)
