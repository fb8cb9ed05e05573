"""One module per CLI command: ``blockout/cmd_<name>.py`` registers the subcommand ``<name>`` and
nothing else, and ``blockout/cli.py`` holds the parser, the global options and ``main`` but no
command handler."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from blockout import cli

ROOT = Path(__file__).resolve().parents[1]
CMD_MODULES = sorted(p.stem for p in (ROOT / "blockout").glob("cmd_*.py"))
#: ``train`` moves out of cli.py in its own change; until blockout/cmd_train.py exists it may stay.
TRAIN_IN_CLI = set() if importlib.util.find_spec("blockout.cmd_train") else {"train"}


def _command(module: str) -> str:
    return module.removeprefix("cmd_")


def _fresh_subparsers():
    parser = cli.OneLineErrorParser(prog="blockout")
    return parser, parser.add_subparsers(dest="command", parser_class=cli.OneLineErrorParser)


def test_the_command_modules_are_found():
    # the six moved out of cli.py plus the two that were born as modules
    assert {"cmd_inspect", "cmd_demo", "cmd_reproduce", "cmd_compare", "cmd_export", "cmd_dashboard",
            "cmd_report", "cmd_compile"} <= set(CMD_MODULES)


@pytest.mark.parametrize("module", CMD_MODULES)
def test_each_command_module_registers_exactly_its_one_subcommand(module):
    name = _command(module)
    mod = importlib.import_module(f"blockout.{module}")
    tree = ast.parse((ROOT / "blockout" / f"{module}.py").read_text())
    top = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    # one handler; helpers such as add_config_flags may sit beside it, other commands' add_<name> may not
    assert [f for f in top if f.startswith("cmd_")] == [f"cmd_{name}"]
    others = {f"add_{_command(m)}" for m in CMD_MODULES} | {"add_train"}
    assert [f for f in top if f in others] == [f"add_{name}"]
    _, sub = _fresh_subparsers()
    getattr(mod, f"add_{name}")(sub)
    assert list(sub.choices) == [name]
    assert sub.choices[name].get_default("handler") is getattr(mod, f"cmd_{name}")


def test_cli_registers_every_command_module_once_in_order():
    expected = [getattr(importlib.import_module(f"blockout.{m}"), f"add_{_command(m)}") for m in CMD_MODULES]
    registered = [add for add in cli.COMMANDS if add.__module__ != "blockout.cli"]
    assert sorted(registered, key=lambda f: f.__module__) == expected
    assert len(set(cli.COMMANDS)) == len(cli.COMMANDS)
    # the order of `blockout --help` is the order of COMMANDS
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == [f.__name__.removeprefix("add_") for f in cli.COMMANDS]


def test_cli_holds_no_command_handler():
    tree = ast.parse((ROOT / "blockout" / "cli.py").read_text())
    top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    commands = {_command(m) for m in CMD_MODULES} | {"train"}
    in_cli = {name for name in commands if {f"add_{name}", f"cmd_{name}"} & top}
    assert in_cli <= TRAIN_IN_CLI
    assert not {f for f in top if f.startswith("cmd_")} - {f"cmd_{n}" for n in TRAIN_IN_CLI}
    # every handler the parser dispatches to is defined in a command module
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        handler = parser.get_default("handler")
        if name in TRAIN_IN_CLI:
            continue
        assert handler.__module__ == f"blockout.cmd_{name}", name


@pytest.mark.parametrize("name, home", [
    ("inspect_run", "blockout.cmd_inspect"), ("format_inspect", "analysis.summary_report"),
    ("format_summary", "analysis.summary_report"), ("demo_config", "blockout.cmd_demo"),
    ("run_is_complete", "blockout.cmd_demo"), ("server_answers", "blockout.cmd_dashboard"),
    ("stop_child", "blockout.cmd_dashboard"), ("dashboard_command", "blockout.cmd_dashboard"),
    ("cmd_compare", "blockout.cmd_compare"), ("cmd_export", "blockout.cmd_export"),
])
def test_moved_names_still_import_from_cli_as_the_same_objects(name, home):
    assert getattr(cli, name) is getattr(importlib.import_module(home), name)


def test_an_unknown_cli_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'cmd_nope'"):
        cli.cmd_nope  # noqa: B018
