"""Size limits on everything read from files that may come from someone else.

A run folder, an uploaded archive, a config or a hierarchy file is untrusted input: a 60 KB
``run.json`` can declare 10^12 class nodes, a 1 MB snapshot can inflate to gigabytes. Every
reader checks the declared sizes against these limits *before* it allocates, and fails with
one line naming the file, the limit and the environment variable that raises it.

The defaults are far above anything the paper's networks need (ImageNet: 1 000 classes,
4 096-node layers) and far below what would exhaust a laptop. A real run that needs more sets
the variable, e.g. ``BLOCKOUT_MAX_NODES=50000000 blockout inspect RUN``, or passes the same as a
flag: ``blockout --limit max_nodes=50000000 inspect RUN``.

>>> limit("max_clusters") >= 1000
True
"""

from __future__ import annotations

import os

#: name -> (environment variable, default, what it bounds)
LIMITS: dict[str, tuple[str, int, str]] = {
    "max_json_bytes": ("BLOCKOUT_MAX_JSON_BYTES", 64 << 20,
                       "bytes of one JSON file (run.json, index.json, config, hierarchy)"),
    "max_jsonl_bytes": ("BLOCKOUT_MAX_JSONL_BYTES", 256 << 20, "bytes of metrics.jsonl"),
    "max_json_depth": ("BLOCKOUT_MAX_JSON_DEPTH", 64, "nesting depth of a JSON document"),
    "max_array_bytes": ("BLOCKOUT_MAX_ARRAY_BYTES", 4 << 30,
                        "uncompressed bytes of one array in a snapshot (.npz member)"),
    "max_npz_members": ("BLOCKOUT_MAX_NPZ_MEMBERS", 10_000, "arrays in one snapshot file"),
    "max_nodes": ("BLOCKOUT_MAX_NODES", 10_000_000, "nodes of one node set or features of one layer"),
    "max_clusters": ("BLOCKOUT_MAX_CLUSTERS", 100_000, "clusters k of one node set"),
    "max_classes": ("BLOCKOUT_MAX_CLASSES", 100_000, "classes of a dataset or hierarchy"),
    "max_snapshots": ("BLOCKOUT_MAX_SNAPSHOTS", 1_000_000, "entries of snapshots/index.json"),
    "max_image_pixels": ("BLOCKOUT_MAX_IMAGE_PIXELS", 64_000_000, "pixels of one image in an image folder"),
    "max_upload_bytes": ("BLOCKOUT_MAX_UPLOAD_BYTES", 512 << 20,
                         "uncompressed bytes read from an uploaded archive (kept and skipped members)"),
}


def limit(name: str) -> int:
    """The current value of limit ``name`` (its environment variable, else the default).

    A variable that is not a positive integer is ignored (the default holds) rather than
    turning every read into an error.
    """
    env, default, _ = LIMITS[name]
    raw = os.environ.get(env)
    if raw:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            return default
        if value > 0:
            return value
    return default


def hint(name: str) -> str:
    """``"(limit N; raise it with ENV=... or blockout --limit NAME=...)"``: the tail of every
    over-limit message."""
    return f"(limit {limit(name)}; raise it with {LIMITS[name][0]}=... or blockout --limit {name}=...)"
