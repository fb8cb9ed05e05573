"""Full WordNet 3.0 through nltk, from database files already on disk (never downloaded).

nltk 3.10 only reads corpora under its data roots (``nltk.data.path``), refuses roots that
other accounts can write to, resolves symlinks before checking, and its WordNet reader needs a
``lexnames`` file that Debian's ``wordnet-base`` package (``/usr/share/wordnet``) does not ship.
:func:`prepare_nltk_wordnet` therefore *copies* the database files into a private nltk data
folder (default ``~/.cache/blockout/nltk_data/corpora/wordnet/``), writes ``lexnames`` and puts
that folder on ``nltk.data.path``; :func:`load_nltk_wordnet` then returns nltk's reader.
nltk is imported lazily, so everything else in :mod:`analysis.wordnet` works without it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from analysis.errors import UserError
from analysis.runfolder import atomic_write_text

# The database files nltk's WordNetCorpusReader opens (``lexnames`` is written, not copied).
WORDNET_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
)
# Optional files nltk uses when present (sense keys, counts).
OPTIONAL_FILES = ("index.sense", "cntlist.rev")

# The 45 lexicographer files of WordNet 3.0 (wndb(5WN) "lexnames"): number, name, syntactic category.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}

DEFAULT_SOURCES = ("/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/share/wordnet")


def lexnames_text() -> str:
    """Contents of WordNet's ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line.

    >>> lines = lexnames_text().splitlines()
    >>> len(lines), lines[0], lines[44]
    (45, '00\\tadj.all\\t3', '44\\tadj.ppl\\t3')
    """
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def default_cache_dir() -> Path:
    """``$BLOCKOUT_CACHE`` or ``$XDG_CACHE_HOME/blockout`` or ``~/.cache/blockout``, + ``nltk_data``."""
    base = os.environ.get("BLOCKOUT_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = os.path.join(xdg, "blockout")
    return Path(base) / "nltk_data"


def _has_database(folder: Path) -> bool:
    return all((folder / name).is_file() for name in WORDNET_FILES)


def find_wordnet_files(source: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding the WordNet database files, or None.

    Looks at ``source`` when given (a folder with ``data.noun`` etc., or an nltk data root with
    ``corpora/wordnet/``), else at every ``NLTK_DATA`` root and at :data:`DEFAULT_SOURCES`.
    """
    if source is not None:
        candidates = [Path(source), Path(source) / "corpora" / "wordnet", Path(source) / "dict"]
    else:
        candidates = []
        for root in filter(None, os.environ.get("NLTK_DATA", "").split(os.pathsep)):
            candidates += [Path(root) / "corpora" / "wordnet", Path(root)]
        candidates += [Path(p) for p in DEFAULT_SOURCES]
    for folder in candidates:
        if _has_database(folder):
            return folder
    return None


def prepare_nltk_wordnet(
    source: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> Path:
    """Copy WordNet database files into an nltk data folder and write ``lexnames``.

    Parameters
    ----------
    source : path, optional
        Folder with the WordNet 3.0 database files (default: see :func:`find_wordnet_files`).
    data_dir : path, optional
        nltk data root to fill (default :func:`default_cache_dir`); files land in
        ``<data_dir>/corpora/wordnet/``. Existing files of the same size are kept.

    Returns
    -------
    Path
        The nltk data root (to put on ``nltk.data.path``).

    Raises
    ------
    UserError
        When no WordNet database files are found.
    """
    found = find_wordnet_files(source)
    if found is None:
        where = source if source is not None else "NLTK_DATA or " + ", ".join(DEFAULT_SOURCES)
        raise UserError(f"no WordNet 3.0 database files (data.noun, index.noun, ...) found in {where}")
    root = Path(data_dir) if data_dir is not None else default_cache_dir()
    target = root / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    # nltk refuses data roots other accounts can write to: keep the folders private.
    for folder in (root, root / "corpora", target):
        os.chmod(folder, 0o700)
    for name in WORDNET_FILES + OPTIONAL_FILES:
        src = found / name
        if not src.is_file():
            continue
        dst = target / name
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            continue
        # A real copy, not a symlink: nltk resolves links and refuses targets outside its roots.
        tmp = target / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    if found.resolve() != target.resolve() or not (target / "lexnames").is_file():
        if not (found / "lexnames").is_file() or found.resolve() == target.resolve():
            atomic_write_text(target / "lexnames", lexnames_text())
        else:
            shutil.copyfile(found / "lexnames", target / "lexnames")
    return root


def nltk_available() -> bool:
    """True when nltk can be imported."""
    try:
        import nltk  # noqa: F401
    except ImportError:
        return False
    return True


_READERS: dict[str, object] = {}


def load_nltk_wordnet(source: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
    """nltk's WordNet reader over local WordNet 3.0 files (prepared by :func:`prepare_nltk_wordnet`).

    Never downloads anything. Raises :class:`UserError` when nltk or the files are missing.
    """
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise UserError("nltk is not installed (pip install 'blockout[wordnet]')") from None
    root = prepare_nltk_wordnet(source, data_dir)
    key = str(root)
    if key not in _READERS:
        if key not in nltk.data.path:
            nltk.data.path.append(key)
        corpus_root = nltk.data.find("corpora/wordnet")
        if Path(str(corpus_root)).resolve() != (root / "corpora" / "wordnet").resolve():
            # Another WordNet sits earlier on nltk's path; use ours explicitly.
            corpus_root = nltk.data.find(str(root / "corpora" / "wordnet"))
        import warnings

        class LocalWordNetReader(WordNetCorpusReader):
            """nltk's reader without the WordNet-version mapping for multilingual data.

            The base constructor maps sense keys of "wordnet" onto the loaded version through
            ``index.sense``, which Debian does not ship; we load WordNet 3.0 itself and use no
            multilingual data, so that mapping is the identity and is skipped.
            """

            def map_wn(self, version="wordnet"):
                return None

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available"
            _READERS[key] = LocalWordNetReader(corpus_root, None)
    return _READERS[key]


def wordnet_available(source: str | os.PathLike | None = None) -> bool:
    """True when nltk is importable and WordNet database files can be found."""
    return nltk_available() and find_wordnet_files(source) is not None
