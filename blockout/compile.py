"""Compile a thresholded Blockout network into an explicit branched network.

The thresholded model is the run's masked model with the memberships ``C = (P >= tau)`` in place
of ``P``: layer ``j`` computes ``x (W ⊙ s·M)^T + b`` with ``M = C_out C_in^T`` (count; a pair
sharing several clusters counts each) or ``min(1, C_out C_in^T)`` (union). Every zero of ``M`` is a
connection the branched network does not need. :mod:`analysis.compile_plan` decides which nodes
survive and how they group into dense blocks; this module builds the torch network from that plan:

* :class:`CompiledHead` — the FC stack as blocks of ``W ⊙ s·M``. Activations run transposed,
  ``(nodes, batch)`` in block order: the input is gathered once into block order (only the trunk
  features some kept node reads), a block reads a contiguous row range, consecutive layers stay in
  block order so nothing is gathered between them, and the classes are scattered back to their
  order at the end (removed classes output their constant logit: the bias plus folded
  constants). Parameters per block (or per layer whose blocks are equal and tile both sides:
  stacked). Under ``torch.no_grad`` it runs its inference path (biases as a weight column read
  from a ones row after every hidden block, reused ``out=`` buffers, ``torch.bmm`` over runs of
  equal blocks, in-place ReLU; see ``docs/compile.md``); with autograd or ``torch.export`` the
  plain path (``baddbmm``/``addmm`` with the biases, ``cat``, ``relu``).
* :class:`CompiledNet` — the run's trunk (unchanged) followed by the head.

Nodes that do not vary with the input (dead nodes, or nodes whose only live inputs are constants)
output a constant ``relu(b + ...)``; it is folded into the next layer's biases, which keeps the
compiled outputs equal to the thresholded model's (up to float rounding: blocks sum in another
order).

Saving: :func:`save_compiled` writes ``{"structure": JSON text, "state_dict": tensors}`` with
``torch.save``; :func:`load_compiled` reads it with ``torch.load(..., weights_only=True)`` and
rebuilds the module from the JSON (no pickled modules). :func:`export_compiled` writes a
``torch.export`` program (``.pt2``) that runs without this project: ``torch.export.load(path).module()``.
"""

from __future__ import annotations

import io
import json
import threading
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from analysis import runfolder as rf
from analysis.compile_plan import CompilePlan, LayerPlan, plan_run
from analysis.threshold import binarize
from blockout.errors import UserError
from blockout.functional import count_mask, expected_mask, union_mask

__all__ = [
    "FORMAT", "CompiledHead", "CompiledNet", "CompileInputs", "effective_weights", "masked_stack",
    "build_structure", "build_compiled", "save_compiled", "load_compiled", "export_compiled",
    "load_compile_inputs", "compile_run_network",
]

FORMAT = "blockout-compiled"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------
# the modules


class CompiledHead(nn.Module):
    """The branched FC stack described by ``structure`` (see :func:`build_structure`).

    Input ``(B, in_features)`` trunk features, output ``(B, num_classes)`` logits (a transposed
    view: call ``.contiguous()`` if you need contiguous memory). Parameters (filled by
    ``load_state_dict``): per layer ``l<j>_w`` ``(G, out, in)`` and ``l<j>_b`` ``(G, out, 1)`` for a
    batched layer, or ``l<j>_w<i>`` ``(out, in)`` and ``l<j>_b<i>`` ``(out, 1)`` per block; buffers
    ``input_index`` (when the input is gathered), ``out_index`` and ``out_const``.

    Activations run *transposed*, ``(nodes, B)`` in block order, so a block's inputs are a row
    range (no copy) and the only copies are the gather of the input columns at the start and the
    gather of the class rows at the end. Two ways through the same parameters:

    * **inference** (grad disabled, not exporting): every hidden block's output rows are followed by
      one row of ones, produced by the block's own matrix product (a weight row ``0 ... 0 1``), so
      the next layer's block carries its bias as one more weight column and needs no bias
      operation; each layer writes its blocks into one preallocated ``(rows, B)`` output
      (``out=``), runs of equal blocks with consecutive inputs are one ``torch.bmm``, and the
      ReLU is in place. The augmented weights are built from the parameters on first use and
      rebuilt whenever a parameter changes (tensor version counters).
    * **training and export**: the plain form (``addmm``/``baddbmm`` with the bias, ``cat`` of the
      blocks, ``relu``), which autograd and ``torch.export`` handle.
    """

    def __init__(self, structure: Mapping[str, Any]) -> None:
        super().__init__()
        self.in_features = int(structure["in_features"])
        self.num_classes = int(structure["num_classes"])
        self.layers = [dict(lay) for lay in structure["layers"]]
        self.gather = bool(structure.get("gather_input", False))
        if self.gather:
            self.register_buffer("input_index", torch.zeros(int(structure["input_size"]), dtype=torch.long))
        self.n_out = int(self.layers[-1]["out_features"]) if self.layers else 0
        # static (for torch.export): are the classes already in order, do some output constants?
        self.out_identity = bool(structure.get("out_identity", False))
        self.has_const = bool(structure.get("has_const", True))
        self.register_buffer("out_index", torch.full((self.num_classes,), self.n_out, dtype=torch.long))
        self.register_buffer("out_const", torch.zeros(self.num_classes, 1))
        for j, lay in enumerate(self.layers):
            blocks = lay["blocks"]
            if lay["kind"] == "bmm":
                g = len(blocks)
                (a, e), = blocks[0]["in"]
                d_in, d_out = e - a, blocks[0]["out"][1] - blocks[0]["out"][0]
                lay["groups"], lay["d_in"], lay["d_out"] = g, d_in, d_out
                self.register_parameter(f"l{j}_w", nn.Parameter(torch.zeros(g, d_out, d_in)))
                self.register_parameter(f"l{j}_b", nn.Parameter(torch.zeros(g, d_out, 1)))
            elif lay["kind"] == "blocks":
                for i, b in enumerate(blocks):
                    n_o = b["out"][1] - b["out"][0]
                    n_i = sum(r[1] - r[0] for r in b["in"])
                    self.register_parameter(f"l{j}_w{i}", nn.Parameter(torch.zeros(n_o, n_i)))
                    self.register_parameter(f"l{j}_b{i}", nn.Parameter(torch.zeros(n_o, 1)))
            else:
                raise ValueError(f"unknown layer kind {lay['kind']!r}")
        self._fast_ops = _fast_plan(self.layers, bool(structure.get("group_blocks", True)))
        self._fast_cache: tuple | None = None
        self._buffers_fast: dict = {}  # (thread, batch, dtype, device) -> hidden-layer outputs, reused

    # -- parameters of one block, whatever the layer's kind
    def _block_params(self, j: int, i: int) -> tuple[Tensor, Tensor]:
        if self.layers[j]["kind"] == "bmm":
            return getattr(self, f"l{j}_w")[i], getattr(self, f"l{j}_b")[i]
        return getattr(self, f"l{j}_w{i}"), getattr(self, f"l{j}_b{i}")

    def forward(self, x: Tensor) -> Tensor:  # (B, in_features) -> (B, num_classes)
        batch = x.shape[0]
        if not self.layers:  # no class varies with the input: constant logits
            return self.out_const.t().expand(batch, self.num_classes).clone()
        if (torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
                or torch.jit.is_tracing()):
            h = self._forward_plain(x)
        else:
            h = self._forward_fast(x)
        # classes back to their order; removed classes read the zero row, plus their constant
        if self.has_const:
            full = torch.cat([h, h.new_zeros(1, batch)], 0).index_select(0, self.out_index) + self.out_const
        elif self.out_identity:
            full = h
        else:
            full = h.index_select(0, self.out_index)
        return full.t()

    def _forward_plain(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        h = x.t()  # (in, B)
        if self.gather:
            h = h.index_select(0, self.input_index)  # the used inputs, in block order (one copy)
        last = len(self.layers) - 1
        for j, lay in enumerate(self.layers):
            if lay["kind"] == "bmm":
                g = lay["groups"]
                xg = h.reshape(g, lay["d_in"], batch)  # a view when h is contiguous
                y = torch.baddbmm(getattr(self, f"l{j}_b"), getattr(self, f"l{j}_w"), xg)  # (G, out, B)
                h = y.view(g * lay["d_out"], batch)
            else:
                parts = []
                for i, b in enumerate(lay["blocks"]):
                    rng = b["in"]
                    if len(rng) == 1:
                        a, e = rng[0]
                        xin = h if (a == 0 and e == h.shape[0]) else h[a:e]
                    else:
                        xin = torch.cat([h[a:e] for a, e in rng], 0)
                    parts.append(torch.addmm(getattr(self, f"l{j}_b{i}"), getattr(self, f"l{j}_w{i}"), xin))
                h = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
            if j < last:
                h = torch.relu(h)
        return h

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{lay['name']}:{lay['kind']}x{len(lay['blocks'])}" for lay in self.layers)
        return f"in_features={self.in_features}, num_classes={self.num_classes}, layers=[{kinds}]"

    # -- inference
    def _fast_weights(self) -> list:
        # a parameter changed in place (optimizer step, load_state_dict) bumps its version; moved
        # or re-assigned, it has new storage
        key = tuple((p.data_ptr(), p._version) for p in self._parameters.values())
        if self._fast_cache is None or self._fast_cache[0] != key:
            with torch.no_grad():
                self._fast_cache = (key, _augmented_weights(self._fast_ops, self._block_params))
        return self._fast_cache[1]

    def _reused_buffers(self, x: Tensor) -> tuple[list[Tensor], Tensor | None]:
        # the layers' outputs (and the gathered input) are reused from call to call: fresh 2 MB
        # tensors cost page faults on every call. One set per thread, so concurrent callers never
        # share one; what forward returns is always a fresh tensor (the caller keeps it).
        key = (threading.get_ident(), x.shape[0], x.dtype, x.device)
        bufs = self._buffers_fast.get(key)
        if bufs is None:
            if len(self._buffers_fast) >= 8:  # many batch sizes or threads: keep the memory bounded
                self._buffers_fast.clear()
            # the last layer's output too, unless it is returned as is (classes in order, no constant)
            reuse_last = self.has_const or not self.out_identity
            outs = [x.new_empty(rows, x.shape[0]) for _, rows in self._fast_ops[:None if reuse_last else -1]]
            gathered = x.new_empty(x.shape[0], self.input_index.shape[0]) if self.gather else None
            bufs = (outs, gathered)
            self._buffers_fast[key] = bufs
        return bufs

    def _forward_fast(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        weights = self._fast_weights()
        outs, gathered = self._reused_buffers(x)
        # the products read row ranges of the transposed input as (G, rows, B) views: it must be dense
        xg = torch.index_select(x, 1, self.input_index, out=gathered) if self.gather else x.contiguous()
        h = xg.t()  # (n, B), a transposed view: GEMMs read it as is
        last = len(self.layers) - 1
        for j, (ops, rows) in enumerate(self._fast_ops):
            out = outs[j] if j < len(outs) else h.new_empty(rows, batch)
            for op, (w, b) in zip(ops, weights[j]):
                o0, o1 = op["out"]
                if op["kind"] == "bmm":
                    (a, e), = op["in"]
                    g = op["groups"]
                    xin = h[a:e].view(g, (e - a) // g, batch)
                    dst = out[o0:o1].view(g, (o1 - o0) // g, batch)
                    if b is None:
                        torch.bmm(w, xin, out=dst)
                    else:
                        torch.baddbmm(b, w, xin, out=dst)
                elif not op["in"]:  # reads nothing (cannot happen for a kept node; kept for safety)
                    out[o0:o1].copy_(b.expand(o1 - o0, batch))
                else:
                    dst = out[o0:o1]
                    for r, ((a, e), wr) in enumerate(zip(op["in"], w)):
                        if r == 0:
                            if b is None:
                                torch.mm(wr, h[a:e], out=dst)
                            else:
                                torch.addmm(b, wr, h[a:e], out=dst)
                        else:
                            dst.addmm_(wr, h[a:e])
            if j < last:
                out.relu_()
            h = out
        return h


class CompiledNet(nn.Module):
    """Trunk (unchanged, or none when only the head was compiled) followed by a :class:`CompiledHead`."""

    def __init__(self, structure: Mapping[str, Any]) -> None:
        super().__init__()
        if structure.get("format") != FORMAT:
            raise UserError(f"not a compiled Blockout network (format {structure.get('format')!r})")
        if int(structure.get("format_version", 0)) > FORMAT_VERSION:
            raise UserError(f"compiled network format_version {structure.get('format_version')!r}; "
                            f"this version reads up to {FORMAT_VERSION}")
        self.structure = json.loads(json.dumps(structure))  # a private plain copy
        trunk = structure.get("trunk")
        if trunk is None:
            self.trunk: nn.Module = nn.Flatten(1)
        else:
            from blockout.models import build_trunk

            self.trunk = build_trunk(trunk["kind"], trunk["input_shape"])
        self.head = CompiledHead(structure["head"])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


# ------------------------------------------------------------------------------------------
# the inference layout: blocks of a hidden layer followed by a row of ones (bias as a weight column)


def _padding(ends: Sequence[int]):
    """``f(p) = p + #{end <= p}``: position of kept row ``p`` when a ones row follows every block
    ending at one of ``ends`` (and the end of a row range ``[a, e)``: ``f(e)``, its ones row included).

    >>> f = _padding([2, 5]); [f(p) for p in range(6)]
    [0, 1, 3, 4, 5, 7]
    """
    ends = np.asarray(sorted(ends), dtype=np.int64)

    def f(p):  # an int, or an int array (vectorized)
        q = p + np.searchsorted(ends, p, side="right")
        return q if isinstance(p, np.ndarray) else int(q)
    return f


def _fast_plan(layers: Sequence[Mapping[str, Any]], group_blocks: bool = True) -> list:
    """Per layer ``(ops, rows)``: the matrix products of the inference path and the rows of its
    output (kept nodes, plus one ones row per block in a hidden layer).

    An op is ``{"kind": "bmm" | "mm", "blocks": [i, ...], "in": [[a, e], ...], "out": [o0, o1],
    "groups": G, "cols": [per block: padded column of every parameter column], "ones": [per block:
    first ones column or -1], "ones_out": bool, "bias": bool}`` in padded row coordinates. A run of
    equal blocks whose single input ranges follow each other is one ``bmm`` op; ``bias`` is true
    when some block of the op reads no ones row (then the bias is added by ``baddbmm``/``addmm``).
    """
    plan = []
    prev_ends: list[int] | None = None  # None: the input (no ones rows)
    last = len(layers) - 1
    for j, lay in enumerate(layers):
        blocks = lay["blocks"]
        f_in = _padding(prev_ends or [])
        ones_in = [f_in(e) - 1 for e in (prev_ends or [])]
        hidden = j < last
        ends = [b["out"][1] for b in blocks]
        f_out = _padding(ends) if hidden else (lambda p: int(p))
        rows = int(lay["out_features"]) + (len(blocks) if hidden else 0)
        descs = []
        for i, b in enumerate(blocks):
            rngs = [(f_in(a), f_in(e)) for a, e in b["in"]]
            cols, ones, off = [], -1, 0
            for (a, e), (pa, pe) in zip(b["in"], rngs):
                cols.extend((f_in(np.arange(a, e)) - pa + off).tolist())
                inside = [o for o in ones_in if pa <= o < pe]
                if inside and ones < 0:
                    ones = inside[0] - pa + off
                off += pe - pa
            descs.append({"in": rngs, "out": (f_out(b["out"][0]), f_out(b["out"][1])), "cols": cols, "ones": ones})
        ops = []
        i = 0
        while i < len(descs):
            d0 = descs[i]
            run = [i]
            if group_blocks and len(d0["in"]) == 1:
                while run[-1] + 1 < len(descs):
                    prev, nxt = descs[run[-1]], descs[run[-1] + 1]
                    if not (len(nxt["in"]) == 1 and nxt["in"][0][0] == prev["in"][0][1]
                            and nxt["in"][0][1] - nxt["in"][0][0] == d0["in"][0][1] - d0["in"][0][0]
                            and nxt["out"][1] - nxt["out"][0] == d0["out"][1] - d0["out"][0]):
                        break
                    run.append(run[-1] + 1)
            ds = [descs[r] for r in run]
            kind = "bmm" if len(run) > 1 else "mm"
            ops.append({"kind": kind, "blocks": run, "groups": len(run),
                        "in": [[ds[0]["in"][0][0], ds[-1]["in"][0][1]]] if kind == "bmm" else [list(r) for r in d0["in"]],
                        "out": [ds[0]["out"][0], ds[-1]["out"][1]], "cols": [d["cols"] for d in ds],
                        "ones": [d["ones"] for d in ds], "ones_out": hidden, "bias": any(d["ones"] < 0 for d in ds)})
            i = run[-1] + 1
        plan.append((ops, rows))
        prev_ends = ends
    return plan


def _augmented_weights(plan: Sequence, block_params) -> list:
    """Per layer, per op of :func:`_fast_plan`: ``(w, b)`` with the bias in the ones column (``b``
    None) or in ``b``; ``w`` is ``(G, rows, cols)`` for a ``bmm`` op, a list (one matrix per input
    range) for an ``mm`` op. ``block_params(j, i)`` gives block ``i`` of layer ``j``: ``(W, b)``."""
    out = []
    for j, (ops, _) in enumerate(plan):
        layer = []
        for op in ops:
            ws, bs = [], []
            n_cols = sum(e - a for a, e in op["in"]) // (op["groups"] if op["kind"] == "bmm" else 1)
            for i, cols, ones in zip(op["blocks"], op["cols"], op["ones"]):
                W, b = block_params(j, i)
                d_out = W.shape[0]
                rows = d_out + (1 if op["ones_out"] else 0)
                A = W.new_zeros(rows, n_cols)
                A[:d_out, torch.as_tensor(cols, dtype=torch.long)] = W
                bias = W.new_zeros(rows, 1)
                if op["bias"]:
                    bias[:d_out] = b.reshape(d_out, 1)
                    if op["ones_out"]:
                        bias[d_out] = 1.0
                else:
                    A[:d_out, ones] = b.reshape(d_out)
                    if op["ones_out"]:
                        A[d_out, ones] = 1.0
                ws.append(A)
                bs.append(bias)
            if op["kind"] == "bmm":
                layer.append((torch.stack(ws).contiguous(), torch.stack(bs).contiguous() if op["bias"] else None))
            else:
                A, splits, c = ws[0], [], 0
                for a, e in op["in"]:
                    splits.append(A[:, c:c + e - a].contiguous())
                    c += e - a
                layer.append((splits, bs[0] if op["bias"] else None))
        out.append(layer)
    return out


# ------------------------------------------------------------------------------------------
# reference: the masked model with expected or thresholded memberships


def _mask_of(kind: str, m_out: Tensor, m_in: Tensor, expected: bool) -> Tensor:
    if expected:
        return expected_mask(m_out, m_in, kind)
    return count_mask(m_out, m_in) if kind == "count" else union_mask(m_out, m_in)


def effective_weights(weights: Mapping[str, tuple[np.ndarray, np.ndarray | None]], members: Mapping[str, np.ndarray],
                      chain: Sequence[str], layer_names: Sequence[str], masks: Mapping[str, tuple[str, float]],
                      expected: bool) -> list[tuple[Tensor, Tensor]]:
    """``[(W ⊙ s·M, b)]`` per layer, float32, exactly as the run's layer computes its eval weight.

    ``members`` holds ``P`` per node set (``expected=True``: the expected mask, what the trained
    model uses at test time) or the 0/1 memberships ``C`` (``expected=False``: the thresholded model).
    """
    out = []
    for j, lname in enumerate(layer_names):
        W, b = weights[lname]
        kind, scale = masks[lname]
        m_in = torch.as_tensor(np.asarray(members[chain[j]], np.float32))
        m_out = torch.as_tensor(np.asarray(members[chain[j + 1]], np.float32))
        m = _mask_of(kind, m_out, m_in, expected)
        if scale != 1.0:
            m = m * scale
        w = torch.as_tensor(np.asarray(W, np.float32)) * m
        bias = torch.as_tensor(np.asarray(b, np.float32)) if b is not None else torch.zeros(w.shape[0])
        out.append((w, bias))
    return out


def masked_stack(h: Tensor, layers: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """The dense FC stack: ``relu`` between layers, none after the last (logits)."""
    for j, (w, b) in enumerate(layers):
        h = F.linear(h, w, b)
        if j < len(layers) - 1:
            h = torch.relu(h)
    return h


# ------------------------------------------------------------------------------------------
# building


def _layer_kind(lp: LayerPlan, prefer_bmm: bool) -> str:
    return "bmm" if (prefer_bmm and lp.equal_blocks()) else "blocks"


def build_structure(plan: CompilePlan, in_features: int, trunk: Mapping[str, Any] | None = None,
                    prefer_bmm: bool = True, extra: Mapping[str, Any] | None = None) -> dict:
    """The JSON structure of the compiled network for ``plan`` (no weights)."""
    lps = plan.layer_plans if len(plan.layer_plans[-1].out_nodes) else ()
    layers = [{"name": lp.name, "in_set": lp.in_set, "out_set": lp.out_set, "kind": _layer_kind(lp, prefer_bmm),
               "in_features": int(len(lp.in_nodes)), "out_features": int(len(lp.out_nodes)),
               "blocks": [b.to_json() for b in lp.blocks]} for lp in lps]
    in_nodes = plan.layer_plans[0].in_nodes
    gather = bool(lps) and not (len(in_nodes) == in_features and np.array_equal(in_nodes, np.arange(in_features)))
    out_nodes = plan.layer_plans[-1].out_nodes
    head = {"in_features": int(in_features), "num_classes": plan.num_classes, "gather_input": gather,
            "input_size": int(len(in_nodes)), "layers": layers, "has_const": bool(len(plan.const_classes)),
            "out_identity": bool(np.array_equal(out_nodes, np.arange(plan.num_classes))),
            "group_blocks": bool(prefer_bmm)}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "trunk": dict(trunk) if trunk else None,
            "head": head, **(dict(extra) if extra else {})}


@torch.no_grad()
def build_compiled(plan: CompilePlan, layers: Sequence[tuple[Tensor, Tensor]], in_features: int,
                   trunk_spec: Mapping[str, Any] | None = None, trunk: nn.Module | None = None,
                   prefer_bmm: bool = True, extra: Mapping[str, Any] | None = None) -> CompiledNet:
    """The compiled network for ``plan`` from the thresholded effective weights ``layers``
    (``[(W ⊙ s·M, b)]``, as :func:`effective_weights` with ``expected=False`` gives them).

    Constant nodes are folded into the next layer's biases; removed classes output their constant.
    ``trunk`` (a module with the trunk's weights) is copied into the network when given.
    """
    structure = build_structure(plan, in_features, trunk_spec, prefer_bmm, extra)
    net = CompiledNet(structure)
    if trunk is not None:
        net.trunk.load_state_dict(trunk.state_dict())
    head = net.head
    chain = plan.chain
    L = len(layers)
    # constants, forward: value of every non-varying node (relu for hidden sets, none for classes)
    consts: list[tuple[np.ndarray, Tensor]] = [(np.zeros(0, np.int64), torch.zeros(0))]  # trunk: none
    biases = []
    for j, (w, b) in enumerate(layers):
        b = b.double().clone()
        cidx, cval = consts[-1]
        if len(cidx):
            b += w[:, torch.as_tensor(cidx)].double() @ cval
        nonvar = np.flatnonzero(~plan.varying[chain[j + 1]])
        val = b[torch.as_tensor(nonvar, dtype=torch.long)]
        consts.append((nonvar, torch.relu(val) if j < L - 1 else val))
        biases.append(b)
    head.out_const.copy_(torch.zeros(plan.num_classes, dtype=torch.float64).index_copy_(
        0, torch.as_tensor(consts[-1][0], dtype=torch.long), consts[-1][1]).float().unsqueeze(1))
    if not head.layers:
        return net
    if head.gather:
        head.input_index.copy_(torch.as_tensor(plan.layer_plans[0].in_nodes, dtype=torch.long))
    out_nodes = plan.layer_plans[-1].out_nodes
    pos = torch.full((plan.num_classes,), len(out_nodes), dtype=torch.long)
    pos[torch.as_tensor(out_nodes, dtype=torch.long)] = torch.arange(len(out_nodes))
    head.out_index.copy_(pos)
    for j, (lp, lay) in enumerate(zip(plan.layer_plans, head.layers)):
        w = layers[j][0]
        rows_all = torch.as_tensor(lp.out_nodes, dtype=torch.long)
        cols_all = torch.as_tensor(lp.in_nodes, dtype=torch.long)
        bias = biases[j].float()
        blocks_w, blocks_b = [], []
        for blk in lp.blocks:
            rows = rows_all[blk.out_start:blk.out_stop]
            cols = torch.cat([cols_all[a:e] for a, e in blk.in_ranges]) if blk.in_ranges else cols_all[:0]
            blocks_w.append(w.index_select(0, rows).index_select(1, cols))
            blocks_b.append(bias.index_select(0, rows))
        if lay["kind"] == "bmm":
            getattr(head, f"l{j}_w").copy_(torch.stack(blocks_w))
            getattr(head, f"l{j}_b").copy_(torch.stack(blocks_b).unsqueeze(2))
        else:
            for i, (bw, bb) in enumerate(zip(blocks_w, blocks_b)):
                getattr(head, f"l{j}_w{i}").copy_(bw)
                getattr(head, f"l{j}_b{i}").copy_(bb.unsqueeze(1))
    return net


# ------------------------------------------------------------------------------------------
# saving, loading, exporting


def save_compiled(net: CompiledNet, path: str | Path) -> None:
    """Write ``{"structure": JSON text, "state_dict": {name: tensor}}`` atomically (``torch.save``)."""
    buf = io.BytesIO()
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save({"structure": json.dumps(net.structure), "state_dict": sd}, buf)
    rf.atomic_write_bytes(path, buf.getvalue())


def load_compiled(path: str | Path) -> CompiledNet:
    """Load a network written by :func:`save_compiled` (``torch.load(..., weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"compiled network not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        structure = json.loads(obj["structure"])
        state = obj["state_dict"]
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise UserError(f"{path} is not a compiled Blockout network ({type(exc).__name__}: {exc})") from None
    net = CompiledNet(structure)
    net.load_state_dict(state)
    return net.eval()


def export_compiled(net: CompiledNet, path: str | Path, example: Tensor) -> str:
    """Write ``net`` as a ``torch.export`` program (``.pt2``, batch size dynamic); returns the way used.

    Falls back to TorchScript tracing (``torch.jit.trace``, a ``.pt`` loadable with
    ``torch.jit.load``) when export fails; the return value says which: ``"torch.export"`` or
    ``"torchscript"``.
    """
    path = Path(path)
    net = net.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        ep = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # torch's note when parameters are views of one storage (a bmm layer's blocks): it keeps
            # the shared storage, which is only a problem for weights off the CPU (ours are on it;
            # the tests load and run the saved program)
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            torch.export.save(ep, buf)
        rf.atomic_write_bytes(path, buf.getvalue())
        return "torch.export"
    except Exception:  # noqa: BLE001 - any export failure falls back to TorchScript
        with torch.no_grad():
            traced = torch.jit.trace(net, (example,), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        rf.atomic_write_bytes(path.with_suffix(".ts.pt"), buf.getvalue())
        return "torchscript"


# ------------------------------------------------------------------------------------------
# from a run folder


class CompileInputs:
    """Everything compiling a run needs, read from its folder (see :func:`load_compile_inputs`)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _mask_specs(meta: Mapping[str, Any], run) -> dict[str, tuple[str, float]]:
    raw = {d.get("name"): d for d in (meta.get("topology") or {}).get("layers", []) if isinstance(d, dict)}
    config = run.config  # flat, whichever shape run.json holds
    k = run.node_sets[0].clusters if run.node_sets else 1
    out = {}
    for lay in run.layers:
        kind = lay.mask or "count"
        scale = raw.get(lay.name, {}).get("mask_scale")
        if scale is None:
            scale = config.get("mask_scale")
        if scale is None:  # the model's default: 1/k for count (a set in every cluster = plain layer)
            scale = 1.0 / k if kind == "count" else 1.0
        out[lay.name] = (kind, float(scale))
    return out


def _trunk_spec(meta: Mapping[str, Any], n_trunk: int) -> tuple[str, list[int]]:
    topo = meta.get("topology") or {}
    shape = [int(s) for s in ((meta.get("dataset") or {}).get("input_shape") or [n_trunk])]
    kind = (topo.get("trunk") or {}).get("kind")
    if kind is None:
        kind = "identity" if len(shape) == 1 and shape[0] == n_trunk else "unknown"
    return kind, shape


def load_compile_inputs(run_dir: str | Path, tau: float = 0.5, step: int | None = None,
                        need_trunk: bool = True) -> CompileInputs:
    """Read a run for compiling: plan at ``tau``, memberships at ``step`` (default: the last
    snapshot with weights), the weights of the snapshot with weights nearest to it, mask kinds and scales, and
    the trunk (from ``train_state.pt``, when the trunk has parameters and the file is there).

    ``trunk_note`` says in one line why the trunk is missing when it is (then the network compiled
    is the head alone, fed with the trunk's features).
    """
    from analysis.run import load_run

    run = load_run(run_dir)
    meta = run.record.to_json()  # run.json as load_run validated it
    if not run.node_sets:
        raise UserError(f"{run.path}: method {run.config.get('method', '?')!r} has no cluster memberships "
                        f"(not a Blockout run): nothing to compile")
    if step is not None and int(step) not in run.steps:
        raise UserError(f"{run.path}: no snapshot at step {step} (have {', '.join(map(str, run.steps[-8:]))}"
                        f"{' ...' if len(run.steps) > 8 else ''})")
    if not run.weight_steps():
        raise UserError(f"{run.path}: no snapshot holds weights (weights are saved at the best and last steps)")
    if step is None:  # memberships and weights of the same step: the last snapshot with weights
        step = run.weight_steps()[-1]
    plan = plan_run(run, tau, step)
    probs = run.probs(step)
    weights = run.weights(step)
    chain = list(plan.chain)
    layer_names = list(plan.layers)
    for lname in layer_names:
        if lname not in weights:
            raise UserError(f"{run.path}: the snapshot at step {weights.step} has no weight for layer {lname!r}")
    masks = _mask_specs(meta, run)
    n_trunk = int(probs[chain[0]].shape[0])
    kind, shape = _trunk_spec(meta, n_trunk)
    trunk, trunk_spec, note = None, None, None
    if kind == "identity":
        trunk_spec = {"kind": "identity", "input_shape": shape}
    elif need_trunk:
        state_path = Path(run.path) / rf.TRAIN_STATE
        if kind == "unknown":
            note = "trunk unknown (run.json names no trunk kind): compiled the FC head only"
        elif not state_path.is_file():
            note = (f"trunk weights not available ({kind} trunk, and the run folder has no {rf.TRAIN_STATE}): "
                    f"compiled the FC head only (input: the {n_trunk} trunk features)")
        else:
            trunk, trunk_spec, note = _load_trunk(state_path, kind, shape, weights, layer_names)
    else:
        note = "trunk not loaded"
    return CompileInputs(run=run, meta=meta, plan=plan, probs=probs, weights=weights, weights_step=weights.step,
                         step=run.snapshot(step).step, chain=chain, layer_names=layer_names, masks=masks,
                         tau=float(tau), trunk=trunk, trunk_spec=trunk_spec, trunk_kind=kind,
                         input_shape=shape, trunk_note=note, n_trunk=n_trunk)


def _load_trunk(state_path: Path, kind: str, shape: list[int], weights, layer_names):
    from blockout.checkpoint import load_train_state
    from blockout.models import build_trunk

    state = load_train_state(state_path)
    model_sd = state.get("model") or {}
    sd = {k[len("trunk."):]: v for k, v in model_sd.items() if k.startswith("trunk.")}
    trunk = build_trunk(kind, shape)
    try:
        trunk.load_state_dict(sd)
    except RuntimeError as exc:
        raise UserError(f"{state_path}: trunk weights do not fit a {kind} trunk ({str(exc).splitlines()[0]})") from None
    # train_state.pt holds the trunk of its own step only: it belongs with the FC weights of that step
    saved_step = (state.get("progress") or {}).get("step")
    for lname in layer_names:
        w = model_sd.get(f"fc.{lname}.weight")
        if w is None or tuple(w.shape) != weights[lname][0].shape or not np.array_equal(
                w.float().numpy(), np.asarray(weights[lname][0], np.float32)):
            raise UserError(f"the trunk weights in {state_path} belong to step {saved_step}, not to the FC weights "
                            f"of step {weights.step}: compile with --step {saved_step}")
    return trunk.eval(), {"kind": kind, "input_shape": shape}, None


def compile_run_network(inputs: CompileInputs, prefer_bmm: bool = True,
                        with_expected: bool = True) -> tuple[CompiledNet, list, list | None]:
    """The compiled network of a run plus the thresholded and (``with_expected``) expected effective
    weights ``[(W ⊙ s·M, b)]``: the FC stacks of the two reference models."""
    plan = inputs.plan
    members_c = {s: binarize(inputs.probs[s], inputs.tau).astype(np.float32) for s in inputs.chain}
    thr = effective_weights(inputs.weights, members_c, inputs.chain, inputs.layer_names, inputs.masks, expected=False)
    exp = effective_weights(inputs.weights, inputs.probs, inputs.chain, inputs.layer_names, inputs.masks,
                            expected=True) if with_expected else None
    extra = {"source": {"run": inputs.run.name, "step": inputs.step, "weights_step": inputs.weights_step,
                        "tau": inputs.tau, "masks": {k: list(v) for k, v in inputs.masks.items()}},
             "class_names": list(inputs.run.class_names)}
    net = build_compiled(plan, thr, inputs.n_trunk, inputs.trunk_spec, inputs.trunk, prefer_bmm, extra)
    return net.eval(), thr, exp


def reference_net(trunk: nn.Module | None, layers: Sequence[tuple[Tensor, Tensor]]) -> nn.Module:
    """The dense masked model (trunk + FC stack with the given effective weights) as a module."""
    return _Reference(trunk, layers).eval()


class _Reference(nn.Module):
    def __init__(self, trunk: nn.Module | None, layers: Sequence[tuple[Tensor, Tensor]]) -> None:
        super().__init__()
        self.trunk = trunk if trunk is not None else nn.Flatten(1)
        self.ws = [w for w, _ in layers]
        self.bs = [b for _, b in layers]

    def forward(self, x: Tensor) -> Tensor:
        return masked_stack(self.trunk(x), list(zip(self.ws, self.bs)))


def params_of(module: nn.Module | None) -> int:
    """Number of parameter entries (0 for None)."""
    return 0 if module is None else int(sum(p.numel() for p in module.parameters()))


def trunk_macs(trunk_spec: Mapping[str, Any] | None) -> int | None:
    """Multiply-adds of the trunk per sample when known (identity: 0; others: None)."""
    if trunk_spec is None:
        return None
    return 0 if trunk_spec["kind"] == "identity" else None

