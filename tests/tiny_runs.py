"""Tiny synthetic trainings shared by the trainer tests: a hierarchy file and the options of a run
of a few 8x8 images (seconds on a CPU)."""

from __future__ import annotations

import json
from typing import Any

#: What every tiny run shares; each test adds its own widths, epochs and method.
TINY = {"samples_per_class": 4, "test_samples_per_class": 2, "image_size": 8, "clusters": 3, "batch_size": 8,
        "device": "cpu"}


def write_hierarchy(tmp_path_factory, hierarchy: dict) -> str:
    """Write ``hierarchy`` ({group: [classes]}, nested allowed) as a JSON file; its path."""
    path = tmp_path_factory.mktemp("h") / "h.json"
    path.write_text(json.dumps(hierarchy))
    return str(path)


def tiny_options(hierarchy_file: str, out, **options: Any) -> dict[str, Any]:
    """TrainConfig options of a tiny run on ``hierarchy_file`` into ``out``; ``options`` win."""
    return {"hierarchy": hierarchy_file, **TINY, "out": str(out), **options}
