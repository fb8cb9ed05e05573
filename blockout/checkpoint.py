"""``train_state.pt``: everything needed to resume a run, loadable with ``weights_only=True``.

The state is a plain dict of tensors, numbers, strings, lists and dicts (no pickled classes), so
``torch.load(path, weights_only=True)`` reads it without executing code. Random-number states
are stored as tensors or tuples of ints for the same reason.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.runfolder import atomic_write_bytes
from blockout.errors import UserError

STATE_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """Every random-number state training draws from (torch CPU/CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    random.setstate(_py_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _py_state_to_plain(st: tuple) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]


def _py_state_from_plain(st: list) -> tuple:
    version, internal, gauss = st
    return (version, tuple(internal), gauss)


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a resumable state dict (tensors and plain containers only)."""
    state = dict(state)
    state["state_version"] = STATE_VERSION
    if "config" in state and not isinstance(state["config"], str):
        state["config"] = json.dumps(state["config"])
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_train_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``train_state.pt`` with ``weights_only=True``; a missing or bad file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no resumable state in {path.parent} ({path.name} not found)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise UserError(f"{path} is not a readable training state ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or state.get("state_version") != STATE_VERSION:
        raise UserError(f"{path} is not a blockout training state (version "
                        f"{state.get('state_version') if isinstance(state, dict) else None!r:.40})")
    for key, typ in _REQUIRED.items():
        if not isinstance(state.get(key), typ):
            raise UserError(f"{path} is not a complete training state ({key!r} is "
                            f"{'missing' if key not in state else type(state[key]).__name__})")
    if isinstance(state["config"], str):
        from analysis.runfolder import parse_json

        state["config"] = parse_json(state["config"], f"{path}: the saved config")
        if not isinstance(state["config"], dict):
            raise UserError(f"{path}: the saved config is not a JSON object")
    return state


#: what a resume reads from the state, and its type
_REQUIRED = {"config": (str, dict), "model": dict, "optimizer": dict, "progress": dict, "rng": dict}
