"""Connection budgets: keep a Blockout layer's expected live-connection density at most ``rho``.

This is **our addition**, not part of the Blockout paper. With the paper's formulation taken
literally, cross-entropy rewards every extra live connection, so the membership probabilities
drift to 1 and no branches form (docs/method.md, "The paper's formulation in practice"). A budget turns
"which clusters should this class use" into a constrained choice: each constrained row (a class,
or the whole layer) may keep an expected share ``rho`` of its possible connections.

The constraint ``density_r <= rho`` is enforced with one Lagrange multiplier ``lambda_r >= 0`` per
constrained row: the training loss gets ``sum_r lambda_r * (density_r - rho)`` and, after each
step, the multipliers take a projected dual-ascent step

    lambda_r <- max(0, lambda_r + clip(step * (density_r - rho), -max_step, max_step)),

so a row over budget is pushed harder and a row under budget is released. The step is bounded
because large dual steps collapsed every probability to 0 in the prototype study.

Densities: a connection (a, b) is live when output node ``a`` and input node ``b`` share at least
one cluster. For independent Bernoulli memberships ``P(live) = 1 - prod_l (1 - p_al q_bl)``; when the
input node set has exactly one cluster per node (categorical memberships) the events are
exclusive and ``P(live) = sum_l p_al q_bl`` exactly. The row density is the mean over inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blockout.errors import UserError

__all__ = [
    "live_probability_rows",
    "dual_ascent_step",
    "annealed_rho",
    "ConnectionBudget",
]


def live_probability_rows(
    p_out: torch.Tensor, p_in: torch.Tensor, *, exclusive_in: bool = False, chunk: int = 256
) -> torch.Tensor:
    """Expected share of live connections of every output row of a layer.

    Parameters
    ----------
    p_out : Tensor (out, k)
        Membership probabilities of the layer's output nodes.
    p_in : Tensor (in, k)
        Membership probabilities of the layer's input nodes.
    exclusive_in : bool
        True when every input node is in exactly one cluster (categorical memberships, whose
        probabilities sum to 1 per node); the live probability is then ``p_out @ p_in.T`` exactly.
    chunk : int
        Output rows per chunk for the Bernoulli case, which needs an (chunk, in, k) temporary.

    Returns
    -------
    Tensor (out,)
        ``mean_b P(connection (a, b) is live)`` for each output node ``a``; differentiable.

    Examples
    --------
    >>> p_out = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> p_in = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    >>> [round(v, 4) for v in live_probability_rows(p_out, p_in).tolist()]
    [0.25, 1.0]
    >>> live_probability_rows(p_out, p_in, exclusive_in=True).tolist()
    [0.25, 1.0]
    """
    if p_out.dim() != 2 or p_in.dim() != 2 or p_out.shape[1] != p_in.shape[1]:
        raise ValueError(
            f"p_out (out, k) and p_in (in, k) must share k, got {tuple(p_out.shape)} and {tuple(p_in.shape)}"
        )
    if exclusive_in:
        # P(live) = sum_l p_al q_bl; its mean over b is p_out @ mean_b(q_b)   # (out,)
        return p_out @ p_in.mean(dim=0)
    rows = []
    for start in range(0, p_out.shape[0], chunk):
        pa = p_out[start:start + chunk]  # (c, k)
        # log P(not live) = sum_l log(1 - p_al q_bl), clamped so that p q = 1 stays finite
        prod = (pa[:, None, :] * p_in[None, :, :]).clamp(max=1.0 - 1e-7)  # (c, in, k)
        not_live = torch.exp(torch.log1p(-prod).sum(dim=2))  # (c, in)
        rows.append((1.0 - not_live).mean(dim=1))
    return torch.cat(rows) if rows else p_out.new_zeros(0)


def dual_ascent_step(
    multiplier: torch.Tensor, violation: torch.Tensor, step: float, max_step: float
) -> torch.Tensor:
    """One projected, bounded dual-ascent step: ``max(0, lambda + clip(step * violation))``.

    >>> out = dual_ascent_step(torch.tensor([0.0, 1.0, 0.02]), torch.tensor([0.5, -0.5, -1.0]), 0.1, 0.03)
    >>> [round(v, 4) for v in out.tolist()]
    [0.03, 0.97, 0.0]
    """
    delta = (step * violation).clamp(min=-max_step, max=max_step)
    return (multiplier + delta).clamp(min=0.0)


def annealed_rho(
    rho: float, progress: float, anneal_start: float = 0.0, anneal_end: float = 0.0, rho_start: float = 1.0
) -> float:
    """Budget in force at training progress ``progress`` in [0, 1].

    The budget is ``rho_start`` until ``anneal_start``, shrinks along a cosine to ``rho`` by
    ``anneal_end``, and stays at ``rho`` afterwards. ``anneal_end <= anneal_start`` (the
    default, 0 and 0) means no annealing: ``rho`` throughout. Annealing lets the weights learn
    with every connection live first, so that classes that use the same hidden features also
    keep the same clusters when the budget tightens.

    >>> annealed_rho(0.05, 0.3, 0.0, 0.0)
    0.05
    >>> [round(annealed_rho(0.05, t, 0.2, 0.6), 3) for t in (0.0, 0.2, 0.4, 0.6, 0.9)]
    [1.0, 1.0, 0.525, 0.05, 0.05]
    """
    if anneal_end <= anneal_start or progress >= anneal_end:
        return float(rho)
    if progress <= anneal_start:
        return float(rho_start)
    t = (progress - anneal_start) / (anneal_end - anneal_start)
    return float(rho + (rho_start - rho) * 0.5 * (1.0 + math.cos(math.pi * t)))


class ConnectionBudget(nn.Module):
    """Lagrange multipliers enforcing ``expected live density <= rho`` on one Blockout layer.

    Parameters
    ----------
    num_rows : int
        Output rows of the constrained layer.
    rho : float
        Target density in (0, 1].
    scope : {"row", "layer"}
        "row": one multiplier per output row (e.g. per class); "layer": one for the layer's mean.
    step : float
        Dual-ascent step size (multiplier change per unit of violation per update).
    max_step : float
        Bound on the change of any multiplier in one update.
    anneal_start, anneal_end : float
        Shares of training between which ``rho`` shrinks from ``rho_start`` to ``rho``
        (:func:`annealed_rho`; equal values: no annealing).
    rho_start : float
        Starting budget of the annealing schedule.
    name : str, optional
        Layer name, used for the snapshot key ``multiplier__<name>``.

    The multipliers are a buffer (saved with the model, never touched by the optimiser).
    """

    def __init__(
        self,
        num_rows: int,
        rho: float,
        *,
        scope: str = "row",
        step: float = 0.05,
        max_step: float = 0.01,
        anneal_start: float = 0.0,
        anneal_end: float = 0.0,
        rho_start: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_rows, int) or num_rows < 1:
            raise UserError(f"budget rows must be a positive integer, got {num_rows!r}")
        if not (0.0 < float(rho) <= 1.0):
            raise UserError(f"budget rho must be in (0, 1], got {rho!r}")
        if scope not in ("row", "layer"):
            raise UserError(f"budget scope must be 'row' or 'layer', got {scope!r}")
        if not float(step) > 0:
            raise UserError(f"budget step must be > 0, got {step!r}")
        if not float(max_step) > 0:
            raise UserError(f"budget max_step must be > 0, got {max_step!r}")
        if not (0.0 <= float(anneal_start) <= 1.0 and 0.0 <= float(anneal_end) <= 1.0):
            raise UserError(f"budget anneal window must lie in [0, 1], got ({anneal_start!r}, {anneal_end!r})")
        if not (float(rho) <= float(rho_start) <= 1.0):
            raise UserError(f"budget rho_start must be in [rho, 1] = [{rho}, 1], got {rho_start!r}")
        self.num_rows = num_rows
        self.rho = float(rho)
        self.scope = scope
        self.step = float(step)
        self.max_step = float(max_step)
        self.anneal_start = float(anneal_start)
        self.anneal_end = float(anneal_end)
        self.annealed = self.anneal_end > self.anneal_start
        self.rho_start = float(rho_start)
        self.name = name
        size = num_rows if scope == "row" else 1
        self.register_buffer("multiplier", torch.zeros(size))  # (rows,) or (1,)
        # the budget in force (changes under annealing); a buffer so that it resumes exactly
        self.register_buffer("current_rho", torch.tensor(self.rho_start if self.annealed else self.rho))

    def set_progress(self, progress: float) -> float:
        """Move the annealing schedule to ``progress`` (share of training done); returns rho."""
        rho = annealed_rho(self.rho, progress, self.anneal_start, self.anneal_end, self.rho_start)
        self.current_rho.fill_(rho)
        return rho

    def constrained(self, row_density: torch.Tensor) -> torch.Tensor:
        """Densities of the constrained quantities: the rows, or their mean for scope 'layer'."""
        return row_density if self.scope == "row" else row_density.mean().reshape(1)

    def penalty(self, row_density: torch.Tensor) -> torch.Tensor:
        """Lagrangian term ``sum_r lambda_r (density_r - rho)`` to add to the loss (scalar)."""
        d = self.constrained(row_density)
        return (self.multiplier.detach() * (d - self.current_rho)).sum()

    @torch.no_grad()
    def update(self, row_density: torch.Tensor) -> None:
        """Dual ascent after an optimiser step (``row_density`` from the same step)."""
        d = self.constrained(row_density.detach())
        self.multiplier.copy_(dual_ascent_step(self.multiplier, d - self.current_rho, self.step, self.max_step))

    def summary(self) -> dict:
        """Plain numbers for metrics.jsonl: mean and max multiplier and the budget in force."""
        m = self.multiplier
        return {"mean": float(m.mean()), "max": float(m.max()), "rho": float(self.current_rho)}

    def extra_repr(self) -> str:
        return (
            f"rows={self.num_rows}, rho={self.rho}, scope={self.scope!r}, step={self.step}, "
            f"max_step={self.max_step}, anneal=({self.anneal_start}, {self.anneal_end}), name={self.name!r}"
        )
