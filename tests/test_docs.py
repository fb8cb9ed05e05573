"""The repository's documents stand on their own.

* No tracked ``.py`` or ``.md`` file cites the design notes or other files outside the repository
  (what the code relies on lives in ``docs/``).
* Every relative link in README.md and docs/*.md points to a file of the repository, and a link
  to a heading of a markdown file (``file.md#heading``) to a heading that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Citations of documents outside the repository. Written so that this file does not match itself.
#: A quoted "DESIGN" (a test asserting its absence) is not a citation.
OUTSIDE = re.compile(r"\b" + "DESIGN" + r"\b(?![\"'])" + "|" + r"\.\./" + "shared" + "|" + "/work/" + "shared")

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def tracked(*patterns: str) -> list[Path]:
    """Files git tracks (a new document must be ``git add``-ed before a link to it counts)."""
    try:
        out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / line for line in out.stdout.splitlines() if line]


def outside_citations(text: str) -> list[str]:
    """Lines of ``text`` that cite a document outside the repository.

    >>> D, S = "DES" + "IGN", "../sha" + "red"
    >>> len(outside_citations(f"see {D} §1\\nfine\\n({D}, 'x')\\nread {S}/notes\\n{D}.md"))
    4
    >>> outside_citations(f"{D}ER and designs are fine; assert '{D}' not in text")
    []
    """
    return [line.strip() for line in text.splitlines() if OUTSIDE.search(line)]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading.

    >>> github_slug("Emergence: what makes a hierarchy appear")
    'emergence-what-makes-a-hierarchy-appear'
    >>> github_slug("Analysis: `compare` and `export`")
    'analysis-compare-and-export'
    >>> github_slug("WordNet for any label set, and your own reference")
    'wordnet-for-any-label-set-and-your-own-reference'
    """
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    out: set[str] = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = github_slug(m.group(1))
        n = 1
        base = slug
        while slug in out:  # repeated headings get -1, -2, ...
            slug = f"{base}-{n}"
            n += 1
        out.add(slug)
    return out


def relative_links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    targets = LINK.findall(text) + IMAGE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, mailto: ...


def test_tracked_files_cite_nothing_outside_the_repository():
    files = tracked("*.py", "*.md")
    assert len(files) > 50  # the listing worked
    bad = {str(p.relative_to(ROOT)): lines for p in files
           if p.exists() and (lines := outside_citations(p.read_text(encoding="utf-8", errors="replace")))}
    # this file names the patterns only in pieces, so it never matches itself
    assert not bad, f"citations of documents outside the repository (move what is needed into docs/): {bad}"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_relative_links_point_into_the_repository(md):
    files = {p.resolve() for p in tracked()}
    problems = []
    for target in relative_links(md):
        path, _, frag = target.partition("#")
        dest = (md.parent / path).resolve() if path else md.resolve()
        if ROOT.resolve() not in dest.parents and dest != ROOT.resolve():
            problems.append(f"{target}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif dest.is_file() and dest not in files:
            problems.append(f"{target}: not tracked by git")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            problems.append(f"{target}: no heading #{frag} in {dest.name}")
    assert not problems, f"{md.name}: broken links: {problems}"


def test_the_method_and_analysis_docs_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = next(line for line in readme.splitlines() if line.startswith("| `docs/`"))
    for name in ("method.md", "analysis.md"):
        assert (ROOT / "docs" / name).is_file()
        assert f"`{name}`" in layout


def test_link_checker_finds_a_broken_link(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("# Title\n[ok](x.md#title) [code](`no`) `[not](a-link.md)`\n[bad](missing.md) "
                  "[web](https://example.org)\n```\n[fenced](nope.md)\n```\n")
    assert relative_links(md) == ["x.md#title", "missing.md"]
    assert anchors(md) == {"title"}


def test_saved_results_name_no_path_of_the_machine_they_ran_on():
    """Regression: a benchmark saved the absolute path of its checkout (``"/<...>/.bench/..."``)."""
    files = tracked("benchmarks/results/*")
    assert files  # the listing worked
    absolute = re.compile(r"[\"'](/[^\"'\n]*?/)(\.bench|checkpoints)/")
    bad = [str(p.relative_to(ROOT)) for p in files if p.exists() and absolute.search(p.read_text(errors="replace"))]
    assert not bad, f"absolute machine paths in saved results: {bad}"
