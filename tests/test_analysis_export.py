"""Exports: every format round-trips with hostile class names, through independent readers."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import networkx as nx
import numpy as np
import pytest

from analysis.errors import UserError
from analysis.export import (FORMATS, WHATS, dendrogram_graph, export_run, render, to_dot, to_html, to_json,
                             to_newick)
from analysis.graphs import build_branch_tree, build_layer_graph
from analysis.hierarchy import probability_hierarchy
from analysis.run import load_run
from analysis.synthetic import make_synthetic_run
from analysis.threshold import threshold_all

HOSTILE = [
    "it's", 'say "hi"', "a,b", "(paren)", "x:y;z", "<tag>&amp;", "two  spaces", "naïve 日本",
    "new\nline", "back\\slash", "[bracket]", "tab\tc", "</script><b>", "semi;colon", "{brace}", "end'",
]
N = len(HOSTILE)


def control_to_space(s: str) -> str:
    return re.sub("[\x00-\x1f\x7f]", " ", s)


@pytest.fixture(scope="module")
def tree():
    k = 4
    P = {"trunk": np.ones((3, k)), "h1": np.array([[1, 1, 0, 0], [0, 0, 1, 1.0]] * 3),
         "h2": np.eye(k)[np.arange(8) % k], "classes": np.eye(k)[np.arange(N) % k]}
    th = threshold_all(P, 0.5)
    return build_branch_tree(th, list(P), "classes", HOSTILE, label_fn=lambda idx: HOSTILE[idx[0]] + "/lch")


@pytest.fixture(scope="module")
def dendro():
    rng = np.random.default_rng(0)
    return probability_hierarchy(rng.random((N, 5)), HOSTILE)


@pytest.fixture(scope="module")
def layers():
    P = {"a": np.array([[1, 0], [0, 1], [1, 1.0]]), "b": np.array([[1, 0], [0, 1.0]])}
    G = build_layer_graph(threshold_all(P, 0.5), ["a", "b"], {("a", "b"): np.arange(6.0).reshape(2, 3)})
    for i, v in enumerate(G):
        G.nodes[v]["label"] = HOSTILE[i]
    return G


def labels_of(G):
    return sorted(d["label"] for _, d in G.nodes(data=True))


# ---------------------------------------------------------------------------------------------
# a strict Newick reader (the grammar of the PHYLIP spec: quoted labels with '' escapes)


def parse_newick(text: str):
    text = text.strip()
    pos = 0

    def label():
        nonlocal pos
        if pos < len(text) and text[pos] == "'":
            pos += 1
            out = []
            while True:
                if pos >= len(text):
                    raise ValueError("unterminated quoted label")
                if text[pos] == "'":
                    if pos + 1 < len(text) and text[pos + 1] == "'":
                        out.append("'")
                        pos += 2
                        continue
                    pos += 1
                    return "".join(out)
                if text[pos] in "\n\r":
                    raise ValueError("newline inside a quoted label")
                out.append(text[pos])
                pos += 1
        m = re.compile(r"[^()\[\]':;,\s]*").match(text, pos)
        pos = m.end()
        return m.group(0).replace("_", " ")

    def length():
        nonlocal pos
        if pos < len(text) and text[pos] == ":":
            m = re.compile(r":([0-9.eE+-]+)").match(text, pos)
            if not m:
                raise ValueError(f"bad branch length at {pos}")
            pos = m.end()
            return float(m.group(1))
        return None

    def node():
        nonlocal pos
        children = []
        if text[pos] == "(":
            pos += 1
            children.append(node())
            while text[pos] == ",":
                pos += 1
                children.append(node())
            if text[pos] != ")":
                raise ValueError(f"expected ')' at {pos}: {text[pos:pos + 20]!r}")
            pos += 1
        name = label()
        return {"name": name, "length": length(), "children": children}

    root = node()
    if text[pos:] != ";":
        raise ValueError(f"trailing text {text[pos:]!r}")
    return root


def newick_leaves(t):
    return [t["name"]] if not t["children"] else [x for c in t["children"] for x in newick_leaves(c)]


# ---------------------------------------------------------------------------------------------
# a strict reader for the DOT subset written (quoted IDs, attribute lists, -> edges)

_DOT_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|(?P<punct>[{}\[\];,=])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))', re.S)


def dot_unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", '"': '"', "\\": "\\"}.get(m.group(1), "\\" + m.group(1)), s[1:-1])


def parse_dot(text: str):
    toks, pos = [], 0
    while pos < len(text.rstrip()):
        m = _DOT_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad DOT at {pos}: {text[pos:pos + 30]!r}")
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    assert toks[0] == ("word", "digraph") and toks[1][0] == "str" and toks[2] == ("punct", "{") and toks[-1] == ("punct", "}")
    nodes, edges, i = {}, [], 3

    def attrs(i):
        out = {}
        if toks[i] != ("punct", "["):
            return out, i
        i += 1
        while toks[i] != ("punct", "]"):
            ok = toks[i][0] in ("str", "word") and toks[i + 1] == ("punct", "=") and toks[i + 2][0] in ("str", "word")
            assert ok, toks[i:i + 3]
            key, val = (t[1] if t[0] == "word" else dot_unescape(t[1]) for t in (toks[i], toks[i + 2]))
            out[key] = val
            i += 3
            if toks[i] == ("punct", ","):
                i += 1
        return out, i + 1

    while toks[i] != ("punct", "}"):
        if toks[i][0] == "word":
            _, i = attrs(i + 1)
        else:
            a = dot_unescape(toks[i][1])
            if toks[i + 1][0] == "arrow":
                b = dot_unescape(toks[i + 2][1])
                d, i = attrs(i + 3)
                edges.append((a, b, d))
            else:
                d, i = attrs(i + 1)
                nodes[a] = d
        assert toks[i] == ("punct", ";"), toks[i]
        i += 1
    return nodes, edges


class TestNetworkxFormats:
    @pytest.mark.parametrize("fmt", ["graphml", "gexf", "json"])
    @pytest.mark.parametrize("which", ["tree", "dendro", "layers"])
    def test_round_trip(self, fmt, which, request, tmp_path):
        obj = request.getfixturevalue(which)
        G = obj if isinstance(obj, nx.Graph) else dendrogram_graph(obj)
        data = render(obj, fmt)
        if fmt == "graphml":
            H = nx.parse_graphml(data.decode("utf-8"))
        elif fmt == "gexf":
            p = tmp_path / "g.gexf"
            p.write_bytes(data)
            H = nx.read_gexf(p)
        else:
            H = nx.node_link_graph(json.loads(data), edges="edges")
        assert set(H.nodes) == set(G.nodes) and set(H.edges) == set(G.edges)
        assert labels_of(H) == labels_of(G)  # tab and newline survive all three
        for v in G:
            if G.nodes[v].get("kind") == "class":
                assert H.nodes[v]["label"] == G.nodes[v]["label"]

    def test_sets_become_strings(self, tree):
        H = nx.parse_graphml(render(tree, "graphml").decode())
        assert json.loads(H.nodes["root"]["clusters"]) == [0, 1, 2, 3]

    def test_json_has_no_nan(self):
        G = nx.DiGraph()
        G.add_node("a", x=float("nan"), label="a")
        assert json.loads(to_json(G))["nodes"][0]["x"] is None


class TestNewick:
    @pytest.mark.parametrize("which", ["tree", "dendro"])
    def test_strict_parser_reads_every_label(self, which, request):
        obj = request.getfixturevalue(which)
        text = render(obj, "newick").decode("utf-8")
        t = parse_newick(text)
        assert sorted(newick_leaves(t)) == sorted(control_to_space(h) for h in HOSTILE)

    def test_dendrogram_lengths_sum_to_height(self, dendro):
        t = parse_newick(to_newick(dendrogram_graph(dendro)))
        top = float(dendro.linkage[-1, 2])

        def depths(node, acc):
            acc = acc + (node["length"] or 0.0)
            return [acc] if not node["children"] else [d for c in node["children"] for d in depths(c, acc)]

        assert np.allclose(depths(t, 0.0), top, atol=1e-4)

    def test_deep_chain_does_not_recurse(self):
        n = 1500
        D = np.abs(np.subtract.outer(np.arange(n) ** 2.0, np.arange(n) ** 2.0))
        from analysis.hierarchy import hierarchy_from_distances
        text = to_newick(dendrogram_graph(hierarchy_from_distances(D, linkage="single")))
        assert text.count("(") == n - 1 and text.endswith(";")

    def test_newick_refuses_layer_graph(self, layers):
        with pytest.raises(UserError, match="trees only"):
            render(layers, "newick")


class TestDot:
    @pytest.mark.parametrize("which", ["tree", "dendro", "layers"])
    def test_strict_reader(self, which, request):
        obj = request.getfixturevalue(which)
        G = obj if isinstance(obj, nx.Graph) else dendrogram_graph(obj)
        nodes, edges = parse_dot(to_dot(G, 'title "with" quotes'))
        assert set(nodes) == set(G.nodes) and {(a, b) for a, b, _ in edges} == set(G.edges)
        # newlines survive as Graphviz's \n escape; other control characters (tab) become spaces
        assert sorted(d["label"] for d in nodes.values()) == sorted(x.replace("\t", " ") for x in labels_of(G))

    @pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
    @pytest.mark.parametrize("which", ["tree", "layers"])
    def test_graphviz_reads_it(self, which, request):
        obj = request.getfixturevalue(which)
        out = subprocess.run(["dot", "-Tsvg"], input=to_dot(obj).encode(), capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        assert b"Warning" not in out.stderr and b"Error" not in out.stderr, out.stderr.decode()
        svg = ET.fromstring(out.stdout)
        texts = " ".join(e.text or "" for e in svg.iter() if e.tag.endswith("text"))
        for v, d in obj.nodes(data=True):
            for part in d["label"].split("\n"):
                # Graphviz decodes HTML entities inside labels ("&amp;" is drawn as "&")
                assert html.unescape(part.replace("\t", " ").strip().split()[0]) in texts


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.srcs, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "src" in a or ("href" in a and tag != "a"):
            self.srcs.append(a)
        if tag == "script":
            self._in = a.get("id", "")
            self.scripts.append([self._in, ""])

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None


class TestHtml:
    @pytest.mark.parametrize("which", ["tree", "dendro", "layers"])
    def test_standalone_and_data_intact(self, which, request):
        obj = request.getfixturevalue(which)
        G = obj if isinstance(obj, nx.Graph) else dendrogram_graph(obj)
        page = to_html(G, title="<b>title</b> & 'q'")
        p = _Collector()
        p.feed(page)
        assert not p.srcs and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "<b>title</b>" not in page
        scripts = dict(p.scripts)
        assert set(scripts) == {"data", ""}  # the data block and one inline program
        data = json.loads(scripts["data"])
        assert sorted(n["label"] for n in data["nodes"]) == labels_of(G)
        assert data["tree"] == (which != "layers")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = make_synthetic_run(tmp_path_factory.mktemp("r") / "hostile", trunk=8, hidden=(8, 8), classes=N,
                              clusters=4, groups=2, n_snapshots=2, class_names=HOSTILE)
    return load_run(path)


class TestExportRun:
    @pytest.mark.parametrize("what", WHATS)
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_every_combination(self, run, what, fmt, tmp_path):
        out = tmp_path / f"x.{fmt}"
        if fmt == "newick" and what == "layers":
            with pytest.raises(UserError, match="trees only"):
                export_run(run, what, fmt, out)
            assert not out.exists()
            return
        p = export_run(run, what, fmt, out, tau=0.5)
        assert p == out and out.stat().st_size > 0
        assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]

    def test_bad_choices(self, run, tmp_path):
        with pytest.raises(UserError, match="format"):
            export_run(run, "tree", "svg", tmp_path / "x")
        with pytest.raises(UserError, match="what"):
            export_run(run, "forest", "json", tmp_path / "x")


class TestExportCli:
    def test_writes_file_and_reports_path(self, run, tmp_path, capsys):
        from blockout.cli import main
        out = tmp_path / "t.nwk"
        assert main(["export", str(run.path), "--format", "newick", "--what", "dendrogram", "-o", str(out)]) == 0
        assert capsys.readouterr().out.strip() == str(out)
        assert sorted(newick_leaves(parse_newick(out.read_text()))) == sorted(control_to_space(h) for h in HOSTILE)

    def test_newick_of_layers_is_a_one_line_error(self, run, tmp_path, capsys):
        from blockout.cli import main
        assert main(["export", str(run.path), "--format", "newick", "--what", "layers", "-o", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert "trees only" in err and "\n" not in err
