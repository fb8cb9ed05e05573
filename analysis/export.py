"""Export the branch tree, the layer graph and the class dendrogram to files other tools open.

Formats (:data:`FORMATS`):

``graphml``, ``gexf``, ``json``
    Through networkx (``json`` is node-link data with an ``edges`` key). Attribute values are
    made plain first: tuples, lists, sets and dicts become JSON strings, ``None`` is dropped,
    numpy scalars become Python numbers, and characters XML cannot hold (control characters other
    than tab and newline) become spaces; ``\\r\\n`` and ``\\r`` become ``\\n`` (XML parsers
    normalise them anyway). NaN is written as ``null`` in JSON.
``dot``
    Graphviz. Every ID and value is a double-quoted string with ``\\`` -> ``\\\\``, ``"`` -> ``\\"``
    and newline -> ``\\n`` (Graphviz's own escapes), other control characters -> space; ``weight`` is rounded to an integer because
    ``dot`` accepts only integer edge weights; the file is UTF-8 (``charset`` set). Graphviz
    itself decodes HTML entities inside labels when drawing (a name containing ``&amp;`` is drawn
    as ``&``); the file keeps the exact text.
``newick``
    Trees only (branch tree, dendrogram). Every label is single-quoted with inner quotes doubled
    (the Newick spec), so commas, parentheses, colons, semicolons, brackets and spaces are safe;
    newlines and other control characters become spaces (not every reader accepts them inside
    quotes). The dendrogram carries branch lengths (height differences), the branch tree none.
``html``
    A standalone page (no network access: inline JS and SVG): a collapsible tree for trees
    (click a vertex to fold it), a layered diagram for the layer graph. Labels are inserted with
    ``textContent`` and the data sits in a ``<script type="application/json">`` block whose
    ``<``, ``>`` and ``&`` are ``\\u``-escaped, so no class name can break out of it.

Vertex IDs are plain ASCII (``root``, ``b3``, ``c17``, ``m4``, ``2:5``); names live in ``label``.
All files are written atomically.
"""

from __future__ import annotations

import html as _html
import json
import math
import re
from pathlib import Path
from typing import Any, Callable

import networkx as nx
import numpy as np

from analysis.errors import UserError
from analysis.runfolder import atomic_write_bytes

__all__ = [
    "FORMATS",
    "WHATS",
    "EXTENSIONS",
    "plain_graph",
    "dendrogram_graph",
    "newick_quote",
    "to_newick",
    "to_dot",
    "to_graphml",
    "to_gexf",
    "to_json",
    "to_html",
    "render",
    "write_export",
    "export_run",
]

FORMATS = ("graphml", "gexf", "json", "dot", "newick", "html")
WHATS = ("tree", "layers", "dendrogram")
EXTENSIONS = {"graphml": "graphml", "gexf": "gexf", "json": "json", "dot": "dot", "newick": "nwk", "html": "html"}

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _clean_text(s: str) -> str:
    """Text XML 1.0 can carry: CR/CRLF -> LF, other control characters -> space."""
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return _XML_BAD.sub(" ", s)


def _plain(value: Any) -> Any:
    """One attribute value as str/int/float/bool (None stays None: the caller drops it)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    if isinstance(value, (list, tuple, dict)):
        return _clean_text(json.dumps(value, ensure_ascii=False, default=str))
    return _clean_text(str(value))


def plain_graph(G: nx.Graph) -> nx.DiGraph:
    """Copy of ``G`` whose graph/vertex/edge attributes are plain (see module docstring)."""
    H = G.__class__()
    H.graph.update({k: v for k, v in ((k, _plain(v)) for k, v in G.graph.items()) if v is not None})
    for n, d in G.nodes(data=True):
        H.add_node(str(n), **{k: v for k, v in ((k, _plain(v)) for k, v in d.items()) if v is not None})
    for u, v, d in G.edges(data=True):
        H.add_edge(str(u), str(v), **{k: x for k, x in ((k, _plain(x)) for k, x in d.items()) if x is not None})
    return H


def dendrogram_graph(h) -> nx.DiGraph:
    """A :class:`~analysis.hierarchy.ClassHierarchy` as a tree: leaves ``c<i>`` (label = class
    name, ``class_index``), merges ``m<j>`` (``height``, ``size``); edges carry ``length``.

    >>> from analysis.hierarchy import hierarchy_from_distances
    >>> g = dendrogram_graph(hierarchy_from_distances(np.array([[0, 1.], [1, 0]]), ["a", "b"]))
    >>> g.graph["root"], sorted(g.successors("m0"))
    ('m0', ['c0', 'c1'])
    """
    n = h.n
    G = nx.DiGraph(kind="dendrogram", method=h.method, linkage=h.linkage_method)
    for i, name in enumerate(h.labels):
        G.add_node(f"c{i}", kind="class", label=name, class_index=i, height=0.0, size=1)

    def vid(idx: int) -> str:
        return f"c{idx}" if idx < n else f"m{idx - n}"

    for j, (a, b, height, size) in enumerate(np.asarray(h.linkage)):
        G.add_node(f"m{j}", kind="merge", label=f"{height:.4g}", height=float(height), size=int(size))
        for child in (int(a), int(b)):
            G.add_edge(f"m{j}", vid(child), length=float(height) - G.nodes[vid(child)]["height"])
    G.graph["root"] = f"m{n - 2}" if n >= 2 else ("c0" if n == 1 else "")
    return G


def _root(G: nx.DiGraph) -> str:
    root = G.graph.get("root")
    if root in G:
        return root
    roots = [v for v in G if G.in_degree(v) == 0]
    if len(roots) != 1 or not nx.is_arborescence(G):
        raise UserError("Newick needs a tree (one root, one parent per vertex); use --what tree or dendrogram")
    return roots[0]


def newick_quote(label: str) -> str:
    """A Newick label: single-quoted, inner quotes doubled, control characters -> spaces.

    >>> newick_quote("it's (a), b:c;")
    "'it''s (a), b:c;'"
    """
    return "'" + _CONTROL.sub(" ", str(label)).replace("'", "''") + "'"


def _length(x: float) -> str:
    return f"{max(0.0, float(x)):.6g}"


def to_newick(G: nx.DiGraph, lengths: bool | None = None) -> str:
    """Newick of a tree-shaped DiGraph (branch tree or :func:`dendrogram_graph`).

    Leaves and inner vertices are named by their ``label``; merges of a dendrogram get no name.
    Edge ``length`` attributes become branch lengths when ``lengths`` (default: when present).
    Iterative, so a 1000-leaf chained dendrogram does not hit the recursion limit.

    >>> g = nx.DiGraph(root="r"); g.add_node("r", label="top"); g.add_edge("r", "x"); g.add_edge("r", "y")
    >>> g.nodes["x"]["label"] = "a,b"; g.nodes["y"]["label"] = "O'Neil"
    >>> to_newick(g)
    "('a,b','O''Neil')'top';"
    """
    root = _root(G)
    if lengths is None:
        lengths = any("length" in d for _, _, d in G.edges(data=True))

    def name(v: str) -> str:
        d = G.nodes[v]
        if d.get("kind") == "merge":
            return ""
        return newick_quote(d.get("label", v))

    out: list[str] = []
    # stack of (vertex, state): state 0 = open, 1 = close
    stack: list[tuple[str, int, str | None]] = [(root, 0, None)]
    while stack:
        v, state, parent = stack.pop()
        if state == 0:
            children = list(G.successors(v))
            if children:
                out.append("(")
                stack.append((v, 1, parent))
                for i, c in enumerate(reversed(children)):
                    stack.append((c, 0, v))
                    if i < len(children) - 1:
                        stack.append(("", 2, None))  # separator
            else:
                out.append(name(v))
                if lengths and parent is not None:
                    out.append(":" + _length(G.edges[parent, v].get("length", 0.0)))
        elif state == 1:
            out.append(")" + name(v))
            if lengths and parent is not None:
                out.append(":" + _length(G.edges[parent, v].get("length", 0.0)))
        else:
            out.append(",")
    return "".join(out) + ";"


def _dot_str(value: Any) -> str:
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    s = _CONTROL.sub(" ", s)
    return '"' + s + '"'


def _dot_attrs(d: dict) -> str:
    items = []
    for k, v in d.items():
        if k == "weight" and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = int(round(v)) if math.isfinite(v) else 0
        items.append(f"{_dot_str(k)}={_dot_str(v)}")
    return " [" + ", ".join(items) + "]" if items else ""


def to_dot(G: nx.Graph, name: str = "blockout") -> str:
    """Graphviz DOT text (module docstring for the quoting rules)."""
    H = plain_graph(G)
    arrow = "->" if H.is_directed() else "--"
    lines = [f"{'digraph' if H.is_directed() else 'graph'} {_dot_str(name)} {{",
             '  graph [charset="UTF-8", rankdir="LR"];', '  node [shape="box"];']
    for k, v in H.graph.items():
        if k not in ("charset", "rankdir"):
            lines.append(f"  graph [{_dot_str(k)}={_dot_str(v)}];")
    for n, d in H.nodes(data=True):
        lines.append(f"  {_dot_str(n)}{_dot_attrs(d)};")
    for u, v, d in H.edges(data=True):
        lines.append(f"  {_dot_str(u)} {arrow} {_dot_str(v)}{_dot_attrs(d)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_graphml(G: nx.Graph) -> bytes:
    """GraphML bytes (UTF-8) of the plain copy of ``G``."""
    return "\n".join(nx.generate_graphml(plain_graph(G))).encode("utf-8")


def to_gexf(G: nx.Graph) -> bytes:
    """GEXF 1.2 bytes (UTF-8) of the plain copy of ``G``."""
    return "\n".join(nx.generate_gexf(plain_graph(G))).encode("utf-8")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def to_json(G: nx.Graph) -> str:
    """Node-link JSON (``nx.node_link_graph(data, edges="edges")`` reads it back)."""
    data = nx.node_link_data(plain_graph(G), edges="edges")
    return json.dumps(_json_safe(data), ensure_ascii=False, indent=1, allow_nan=False) + "\n"


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px sans-serif;margin:12px}svg{border:1px solid #ddd}
.node rect{fill:#eef3fb;stroke:#4a6fa5}.node.leaf rect{fill:#fff7e6;stroke:#c98a1b}
.node.folded rect{fill:#c9d8ef}.node text{pointer-events:none}.link{fill:none;stroke:#999}
#info{white-space:pre-wrap;font-family:monospace;margin-top:8px}
</style></head><body>
<h3 id="title"></h3><div>Click a vertex to fold/unfold it (trees) or show its attributes.</div>
<svg id="view" xmlns="http://www.w3.org/2000/svg"></svg><div id="info"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
(function(){
"use strict";
var D=JSON.parse(document.getElementById("data").textContent);
document.getElementById("title").textContent=D.title;
var svg=document.getElementById("view"),NS="http://www.w3.org/2000/svg",info=document.getElementById("info");
var byId={},kids={},folded={};
D.nodes.forEach(function(n){byId[n.id]=n;kids[n.id]=[];});
D.edges.forEach(function(e){kids[e.source].push(e.target);});
function el(tag,attrs,parent){var x=document.createElementNS(NS,tag);for(var k in attrs)x.setAttribute(k,attrs[k]);parent.appendChild(x);return x;}
function label(n){var s=String(n.label===undefined?n.id:n.label);return s.length>40?s.slice(0,39)+"\\u2026":s;}
function show(n){var lines=[];for(var k in n)lines.push(k+": "+n[k]);info.textContent=lines.join("\\n");}
function box(n,x,y,w,cls){var g=el("g",{"class":"node "+cls,transform:"translate("+x+","+y+")"},svg);
 el("rect",{x:0,y:-9,width:w,height:18,rx:3},g);var t=el("text",{x:4,y:4},g);t.textContent=label(n);
 var tt=el("title",{},g);tt.textContent=String(n.label===undefined?n.id:n.label);
 g.style.cursor="pointer";return g;}
function drawTree(){
 while(svg.firstChild)svg.removeChild(svg.firstChild);
 var rows=[],pos={},dx=190,dy=22;
 (function walk(root){var st=[[root,0]];while(st.length){var a=st.pop(),v=a[0],d=a[1];pos[v]=[d*dx+8,rows.length*dy+16];rows.push(v);
  if(!folded[v]){var c=kids[v];for(var i=c.length-1;i>=0;i--)st.push([c[i],d+1]);}}})(D.root);
 var maxd=0;rows.forEach(function(v){maxd=Math.max(maxd,pos[v][0]);});
 svg.setAttribute("width",maxd+dx+20);svg.setAttribute("height",rows.length*dy+24);
 rows.forEach(function(v){if(folded[v])return;kids[v].forEach(function(c){var a=pos[v],b=pos[c];
  el("path",{"class":"link",d:"M"+(a[0]+170)+","+a[1]+" H"+(b[0]-8)+" V"+b[1]+" H"+b[0]},svg);});});
 rows.forEach(function(v){var n=byId[v],leaf=kids[v].length===0;
  var g=box(n,pos[v][0],pos[v][1],170,leaf?"leaf":(folded[v]?"folded":""));
  g.addEventListener("click",function(){show(n);if(!leaf){folded[v]=!folded[v];drawTree();}});});
}
function drawLayers(){
 var cols={},maxd=0;D.nodes.forEach(function(n){var d=+n.depth||0;(cols[d]=cols[d]||[]).push(n);maxd=Math.max(maxd,d);});
 var pos={},dx=240,dy=26,maxr=0;
 for(var d=0;d<=maxd;d++){(cols[d]||[]).forEach(function(n,i){pos[n.id]=[d*dx+8,i*dy+16];maxr=Math.max(maxr,i+1);});}
 svg.setAttribute("width",(maxd+1)*dx+20);svg.setAttribute("height",maxr*dy+24);
 var maxl=1;D.edges.forEach(function(e){maxl=Math.max(maxl,+e.live||1);});
 D.edges.forEach(function(e){var a=pos[e.source],b=pos[e.target];if(!a||!b)return;
  var p=el("path",{"class":"link",d:"M"+(a[0]+180)+","+a[1]+" C"+(a[0]+210)+","+a[1]+" "+(b[0]-30)+","+b[1]+" "+b[0]+","+b[1],
  "stroke-width":Math.max(0.5,6*Math.sqrt((+e.live||1)/maxl))},svg);var t=el("title",{},p);t.textContent=JSON.stringify(e);});
 D.nodes.forEach(function(n){var g=box(n,pos[n.id][0],pos[n.id][1],180,"");g.addEventListener("click",function(){show(n);});});
}
if(D.tree)drawTree();else drawLayers();
})();
</script></body></html>
"""


def _script_json(obj: Any) -> str:
    s = json.dumps(_json_safe(obj), ensure_ascii=False, allow_nan=False)
    return s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def to_html(G: nx.DiGraph, title: str = "Blockout") -> str:
    """A standalone interactive HTML page (module docstring)."""
    H = plain_graph(G)
    tree = H.number_of_nodes() > 0 and nx.is_arborescence(H)
    data = {
        "title": _clean_text(title),
        "tree": bool(tree),
        "root": _root(H) if tree else None,
        "nodes": [dict(d, id=n) for n, d in H.nodes(data=True)],
        "edges": [dict(d, source=u, target=v) for u, v, d in H.edges(data=True)],
    }
    return _HTML_TEMPLATE.replace("__TITLE__", _html.escape(_clean_text(title))).replace("__DATA__", _script_json(data))


def render(obj, fmt: str, title: str = "Blockout") -> bytes:
    """Bytes of ``obj`` (a DiGraph, or a ClassHierarchy for the dendrogram) in format ``fmt``."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    G = obj if isinstance(obj, nx.Graph) else dendrogram_graph(obj)
    if fmt == "newick":
        if G.graph.get("kind") == "layer_graph":
            raise UserError("newick holds trees only: use --what tree or --what dendrogram")
        return (to_newick(G) + "\n").encode("utf-8")
    if fmt == "graphml":
        return to_graphml(G)
    if fmt == "gexf":
        return to_gexf(G)
    if fmt == "json":
        return to_json(G).encode("utf-8")
    if fmt == "dot":
        return to_dot(G, title).encode("utf-8")
    return to_html(G, title).encode("utf-8")


def write_export(obj, fmt: str, path: str | Path, title: str = "Blockout") -> Path:
    """Render and write atomically; returns the path."""
    data = render(obj, fmt, title)
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output path is a folder: {path}")
    atomic_write_bytes(path, data)
    return path


def export_run(run, what: str = "tree", fmt: str = "graphml", path: str | Path | None = None,
               tau: float = 0.5, step: int | None = None, method: str = "probability",
               label_fn: Callable | None = None) -> Path:
    """Export one view of a loaded run; ``path=None`` writes ``<run>_<what>.<ext>`` in the cwd.

    ``what``: ``tree`` (branch tree, inner vertices labelled by the WordNet lowest common
    hypernym when the classes map to synsets), ``layers`` (layer graph) or ``dendrogram``
    (class hierarchy by ``method``, see :func:`analysis.hierarchy.class_hierarchy`).
    """
    from analysis import graphs, hierarchy  # local: keeps `import analysis.export` light

    if what not in WHATS:
        raise UserError(f"unknown --what {what!r}; choose one of {', '.join(WHATS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "newick" and what == "layers":
        raise UserError("newick holds trees only: use --what tree or --what dendrogram")
    if what == "tree":
        obj = graphs.branch_tree(run, tau, step, label_fn if label_fn is not None else graphs.wordnet_labeler(run))
    elif what == "layers":
        obj = graphs.layer_graph(run, tau, step)
    else:
        obj = dendrogram_graph(hierarchy.class_hierarchy(run, method, tau, step))
    if path is None:
        path = Path.cwd() / f"{run.name}_{what}.{EXTENSIONS[fmt]}"
    return write_export(obj, fmt, path, title=f"{run.name}: {what}")
