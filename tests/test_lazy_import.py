"""Startup stays torch-free: ``import blockout`` / ``blockout.cli`` must not import torch.

Every ``blockout`` command (``--help``, ``inspect``, ``dashboard``) imports ``blockout.cli``;
importing torch there cost seconds per command. These run in a fresh interpreter, because the
test process itself has torch loaded already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("module", ["blockout", "blockout.cli"])
def test_import_does_not_load_torch(module):
    assert _python(f"import {module}, sys; print('torch' in sys.modules)") == "False"


def test_parser_and_inspect_do_not_load_torch(tmp_path):
    # building every subcommand's parser (what --help does) and inspecting a run need no torch
    code = (
        "import sys, contextlib, io\n"
        "from blockout.cli import build_parser, main\n"
        "build_parser()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['inspect', 'checkpoints/demo', '--json'])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    assert _python(code) == "0 False"


def test_public_names_still_import_and_are_the_defining_objects():
    from blockout import BlockoutHead, BlockoutLinear, NodeClusters, RunLogger, shared_sampling
    import blockout
    from blockout import clusters, head, linear, logger

    assert BlockoutHead is head.BlockoutHead and RunLogger is logger.RunLogger
    assert NodeClusters is clusters.NodeClusters and shared_sampling is clusters.shared_sampling
    assert BlockoutLinear is linear.BlockoutLinear
    assert set(blockout.__all__) <= set(dir(blockout))
    assert all(hasattr(blockout, name) for name in blockout.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        blockout.not_a_name  # noqa: B018


def test_public_names_resolve_lazily_in_a_fresh_interpreter():
    code = ("import sys, blockout\n"
            "before = 'torch' in sys.modules\n"
            "from blockout import BlockoutHead, RunLogger\n"
            "print(before, 'torch' in sys.modules, BlockoutHead.__module__, RunLogger.__module__)\n")
    assert _python(code) == "False True blockout.head blockout.logger"
