"""The sidebar (run picker, upload, snapshot step, threshold τ) and cached run loading.

The entry script (``app/Home.py``) calls :func:`sidebar` on every rerun before the selected page
runs, so the widgets live in one place and keep their values across pages; pages call
:func:`require_context` to get the chosen run, step and τ (or stop with a friendly message).

Loaded runs are cached with ``st.cache_resource`` keyed by the folder *and* the modification
times of its index files, so a run that is still training is re-read when it grows.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from analysis.errors import UserError
from analysis.run import Run, load_run
from analysis.runformat import METRICS, RUN_JSON, SNAPSHOT_DIR, SNAPSHOT_INDEX, is_run_folder
from app import uploads

REPO = Path(__file__).resolve().parents[1]
#: Overrides for tests and deployments: the folder of runs and the run to open first.
ENV_CHECKPOINTS = "BLOCKOUT_CHECKPOINTS"
ENV_RUN = "BLOCKOUT_RUN"

SRC_PICK, SRC_PATH, SRC_UPLOAD = "Run under checkpoints/", "Folder path", "Upload archive"
TAU_DEFAULT = 0.5


@dataclass(frozen=True)
class Context:
    """What every page works on: a loaded run, its cache key, the snapshot step and τ."""

    run: Run
    key: str  # absolute folder path (cache key)
    stamp: tuple  # modification times that invalidate the caches
    label: str  # how the run is named on screen
    step: int | None  # None when the run has no snapshots
    tau: float

    @property
    def has_memberships(self) -> bool:
        """True for Blockout runs (node sets with cluster probabilities)."""
        return bool(self.run.node_sets) and bool(self.run.steps)


# ---------------------------------------------------------------------------------------------
# locating runs


def checkpoints_root() -> Path:
    """The folder whose run folders the picker lists (``$BLOCKOUT_CHECKPOINTS`` or ./checkpoints)."""
    env = os.environ.get(ENV_CHECKPOINTS)
    return Path(env).expanduser() if env else REPO / "checkpoints"


def cli_run_arg(argv: list[str] | None = None) -> str | None:
    """The run given after ``--`` on the ``streamlit run`` line, or ``$BLOCKOUT_RUN``.

    >>> cli_run_arg(["Home.py", "checkpoints/x"])
    'checkpoints/x'
    >>> cli_run_arg(["Home.py"]) is None or "BLOCKOUT_RUN" in os.environ
    True
    """
    if argv is None:
        # Under streamlit.testing (AppTest) sys.argv is the test runner's, not the app's.
        from streamlit import config

        argv = [] if config.get_option("global.appTest") else sys.argv
    args = [a for a in argv[1:] if not a.startswith("-")]
    if args:
        return args[0]
    return os.environ.get(ENV_RUN) or None


#: How deep under the checkpoints folder the picker looks for run folders (``blockout reproduce``
#: writes ``<name>/<method>-s<seed>/``, two levels down), and how many folders it reads at most.
NEST_DEPTH, MAX_SCANNED = 3, 5000
TOP = ""  # the group of the runs directly under the checkpoints folder


def discover_runs(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Run folders under ``root`` grouped by their parent folder (relative to ``root``).

    Runs directly under ``root`` are the group ``""``; a run made by ``blockout reproduce`` at
    ``root/<name>/<method>-s<seed>/`` is in group ``"<name>"``. Looks at most :data:`NEST_DEPTH`
    levels down and reads at most :data:`MAX_SCANNED` folders; hidden folders, symbolic links
    (they could leave ``root``) and the inside of run folders are not entered. The top-level
    group comes first, then the others by name; runs are sorted by name.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for rel in ("demo", "repro/fc-s0", "repro/dropout-s0"):
    ...     (d / rel).mkdir(parents=True); (d / rel / "run.json").touch()
    >>> {g: [p.name for p in runs] for g, runs in discover_runs(d).items()}
    {'': ['demo'], 'repro': ['dropout-s0', 'fc-s0']}
    """
    root = Path(root)
    if is_run_folder(root):
        return {TOP: [root]}
    groups: dict[str, list[Path]] = {}
    if not root.is_dir():
        return groups
    scanned = 0
    level = [root]
    for _ in range(NEST_DEPTH):
        nxt = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for p in entries:
                scanned += 1
                if scanned > MAX_SCANNED:
                    break
                if p.name.startswith(".") or p.is_symlink() or not p.is_dir():
                    continue
                if is_run_folder(p):
                    group = folder.relative_to(root).as_posix() if folder != root else TOP
                    groups.setdefault(group, []).append(p)
                else:
                    nxt.append(p)
        level = nxt
    return {g: sorted(groups[g]) for g in sorted(groups, key=lambda g: (g != TOP, g))}


def all_runs(root: str | os.PathLike) -> list[Path]:
    """Every run of :func:`discover_runs`, in the picker's order."""
    return [p for runs in discover_runs(root).values() for p in runs]


def run_label(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """A run's name in the pickers: its path under ``root`` (``repro/fc-s0``), else its folder name.

    >>> run_label("/c/repro/fc-s0", "/c"), run_label("/elsewhere/x", "/c")
    ('repro/fc-s0', 'x')
    """
    p, r = Path(path), Path(root)
    try:
        return p.relative_to(r).as_posix()
    except ValueError:
        return p.name


def default_run(root: Path) -> Path | None:
    """The run opened first: the command-line run, else ``demo``, else the first run under ``root``."""
    arg = cli_run_arg()
    if arg:
        return Path(arg).expanduser()
    if is_run_folder(root / "demo"):
        return root / "demo"
    runs = all_runs(root)
    return runs[0] if runs else None


def run_stamp(path: str | os.PathLike) -> tuple:
    """Modification times of the files that change while a run trains (cache invalidation)."""
    path = Path(path)
    out = []
    for f in (path / RUN_JSON, path / METRICS, path / SNAPSHOT_DIR / SNAPSHOT_INDEX):
        try:
            out.append(f.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# cached loading


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(key: str, stamp: tuple) -> Run:
    del stamp  # only part of the cache key
    return load_run(key)


def open_run(path: str | os.PathLike) -> tuple[Run, str, tuple]:
    """Load (cached) the run folder at ``path``; returns ``(run, key, stamp)``.

    Raises :class:`UserError` with a one-line message for anything wrong with the folder.
    """
    p = Path(path).expanduser()
    if not str(path).strip():
        raise UserError("type the path of a run folder (a folder holding run.json)")
    if p.is_file() and p.name == RUN_JSON:
        p = p.parent
    if not p.exists():
        raise UserError(f"run folder not found: {p}")
    if not is_run_folder(p):
        raise UserError(f"{p} is not a run folder (it has no {RUN_JSON})")
    key = str(p.resolve())
    stamp = run_stamp(key)
    try:
        return _load(key, stamp), key, stamp
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # defensive: never a traceback
        raise UserError(f"cannot read run folder {p}: {exc}") from None


def first_openable(paths: list[str], limit: int = 20) -> int:
    """Index of the first of ``paths`` (at most ``limit`` tried) whose run folder opens; 0 when none does.

    The Compare page's default second run: a broken sibling listed first would otherwise greet
    the page with nothing but its error box.
    """
    for i, path in enumerate(paths[:limit]):
        try:
            open_run(path)
        except UserError:
            continue
        return i
    return 0


@st.cache_resource(show_spinner=False)
def _sweep_once() -> int:
    """Delete the unpacked uploads of dashboards that were killed (once per server process)."""
    return uploads.sweep_orphans()


def open_upload(filename: str, data: bytes) -> tuple[Run, str, tuple]:
    """Safely unpack an uploaded run archive into a temporary folder and load it."""
    _sweep_once()
    digest = hashlib.sha256(data).hexdigest()
    folder = uploads.unpack(digest, filename, data)  # the least recently used upload is deleted
    return open_run(folder)


# ---------------------------------------------------------------------------------------------
# the sidebar


def _keep(*keys: str) -> None:
    # Re-assigning widget values keeps them when a page does not render the widget.
    for key in keys:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _choose_source(root: Path) -> tuple[str | None, tuple[str, bytes] | None]:
    """The run-source widgets; returns (folder path or None, (upload name, bytes) or None)."""
    side = st.sidebar
    groups = discover_runs(root)
    runs = [p for g in groups.values() for p in g]
    first = default_run(root)
    if "src" not in st.session_state:
        listed = first is None or any(first.exists() and r.resolve() == first.resolve() for r in runs)
        st.session_state["src"] = SRC_PICK if listed else SRC_PATH  # a run given outside checkpoints/
        st.session_state["path"] = str(first) if first is not None else ""
    source = side.radio("Open a run", (SRC_PICK, SRC_PATH, SRC_UPLOAD), key="src")
    if source == SRC_PICK:
        if not runs:
            side.info(f"No run folders under {root}.")
            return None, None
        first_rel = run_label(first, root) if first is not None else None
        if len(groups) > 1:
            # Runs of `blockout reproduce` (<name>/<method>-s<seed>/) are listed under their folder.
            names = list(groups)
            if st.session_state.get("pick_group") not in names:
                st.session_state["pick_group"] = next(
                    (g for g, rs in groups.items() if first_rel in {run_label(r, root) for r in rs}), names[0])
            group = side.selectbox("Folder", names, key="pick_group",
                                   format_func=lambda g: f"{g}/ ({_runs(len(groups[g]))})" if g else
                                   f"{root.name}/ (top level, {_runs(len(groups[g]))})",
                                   help="Runs are grouped by the folder that holds them, e.g. the runs "
                                        "`blockout reproduce` writes as <name>/<method>-s<seed>/.")
        else:
            group = next(iter(groups))
        rels = [run_label(r, root) for r in groups[group]]
        if st.session_state.get("pick") not in rels:
            st.session_state["pick"] = first_rel if first_rel in rels else rels[0]
        rel = side.selectbox("Run", rels, key="pick", format_func=lambda r: r.rsplit("/", 1)[-1])
        return str(root / rel), None
    if source == SRC_PATH:
        path = side.text_input("Run folder", key="path", placeholder="checkpoints/my-run")
        return path, None
    up = side.file_uploader("Run folder archive (.zip, .tar.gz)", type=["zip", "gz", "tgz", "tar"],
                            key="upload", help="Only .json, .jsonl and .npz files are read.")
    if up is None:
        return None, None
    return None, (up.name, up.getvalue())


def sidebar() -> Context | None:
    """Draw the sidebar, load the chosen run and store the :class:`Context` for the pages."""
    _keep("src", "pick_group", "pick", "path", "tau")
    st.session_state.pop("_ctx", None)
    st.session_state.pop("_ctx_msg", None)
    root = checkpoints_root()
    st.sidebar.title("Blockout")
    folder, upload = _choose_source(root)
    if folder is None and upload is None:
        if st.session_state.get("src") == SRC_UPLOAD:
            st.session_state["_ctx_msg"] = ("info", "Upload a .zip or .tar.gz of a run folder in the sidebar.")
        elif not all_runs(root):
            st.session_state["_ctx_msg"] = ("info", (
                f"No run found under {root}. Train one with `blockout train --out checkpoints/my-run` "
                "(or `make demo`), or open a folder by path or upload an archive in the sidebar."))
        return None
    try:
        if upload is not None:
            run, key, stamp = open_upload(*upload)
            label = f"{upload[0]} (uploaded)"
        else:
            run, key, stamp = open_run(folder)
            label = run_label(key, root.resolve()) if Path(key).is_relative_to(root.resolve()) else run.name
    except UserError as exc:
        st.session_state["_ctx_msg"] = ("error", str(exc))
        return None

    step = None
    if run.steps:
        skey = "step:" + hashlib.sha1(key.encode()).hexdigest()[:10]
        _keep(skey)
        if st.session_state.get(skey) not in run.steps:
            st.session_state[skey] = run.steps[-1]
        if len(run.steps) > 1:
            step = st.sidebar.select_slider("Snapshot step", options=run.steps, key=skey,
                                            help="Which saved snapshot of P (and weights) to analyse.")
        else:
            step = run.steps[0]
            st.sidebar.caption(f"One snapshot, at step {step}.")
    else:
        st.sidebar.caption("This run has no snapshots yet.")
    if "tau" not in st.session_state:
        st.session_state["tau"] = TAU_DEFAULT
    tau = st.sidebar.slider("Threshold τ", min_value=0.05, max_value=0.95, step=0.05, key="tau",
                            help="A node is in cluster l when P[node, l] ≥ τ.")
    st.sidebar.caption(f"**{label}** · {len(run.class_names)} classes · "
                       f"{len(run.node_sets)} node sets · {len(run.steps)} snapshots")
    ctx = Context(run=run, key=key, stamp=stamp, label=label, step=step, tau=float(tau))
    st.session_state["_ctx"] = ctx
    return ctx


def require_context() -> Context:
    """The current :class:`Context`; shows the reason and stops the page when there is none."""
    ctx = st.session_state.get("_ctx")
    if ctx is None:
        kind, msg = st.session_state.get("_ctx_msg") or ("info", "Pick a run in the sidebar.")
        (st.error if kind == "error" else st.info)(msg)
        st.stop()
    return ctx
