"""The GSEMM equations: vector fields and energies of LISEM and DSEM.

Each equation is written once, here, as a pure function over batched states
(``v``, ``v_d``: [B, N]) and the weights (``xi``: Ξ, [N, K], whose columns are
the memories; ``phi``: Φ, [K, K], with ``phi[ν, μ] > 0`` meaning "μ is followed
by ν"). The model classes in :mod:`replaybench.memories.gsemm.models` only wrap them.

Source: Karuvally, Sejnowski & Siegelmann, "General Sequential Episodic Memory
Model", ICML 2023 (arXiv 2212.05563), and the reference code
github.com/arjun23496/gsemm (``episodic_memory/networks/AdiabaticEpisodicTanh.py``
for LISEM, "Model A"; ``AdiabaticEpisodicExp.py`` for DSEM, "Model B").

Convention for Φ. The paper writes the hidden drive as ``Φᵀ Ξᵀ V_d``; the
reference code applies ``Φ Ξᵀ v_d`` with ``Φ = Gᵀ`` and ``G[μ, μ+1] = 1``.
Both say the same thing: the memory held in the delayed signal excites its
successor. We store the successor matrix directly (``phi[μ+1, μ] = 1``) and
apply ``Φ Ξᵀ v_d``, as the reference code does; ``tests/test_gsemm.py``
checks that recall runs ξ^μ → ξ^{μ+1}.

In row-vector (batched) form ``Ξᵀ v`` is ``v @ xi`` and ``Φ Ξᵀ v_d`` is
``(v_d @ xi) @ phi.T``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def lisem_output(v: Tensor, gamma: float) -> Tensor:
    """LISEM's feature nonlinearity σ_f(v) = tanh(γ v)."""
    return torch.tanh(gamma * v)


def lisem_vector_field(
    v: Tensor,
    v_d: Tensor,
    xi: Tensor,
    phi: Tensor,
    *,
    alpha_s: float,
    alpha_c: float,
    gamma: float,
    tau_f: float,
    tau_d: float,
    beta_d: float,
) -> tuple[Tensor, Tensor]:
    """Time derivatives of LISEM's feature and delay states.

    ``T_f dv/dt = α_s Ξ Ξᵀ g(v) + α_c Ξ Φ Ξᵀ v_d − v`` and
    ``T_d dv_d/dt = β_d g(v) − v_d``, with ``g = tanh(γ ·)`` (paper, model A;
    the hidden layer is linear and has been eliminated).

    Returns:
        ``(dv/dt, dv_d/dt)``, each [B, N].
    """
    g = lisem_output(v, gamma)
    hidden = alpha_s * (g @ xi) + alpha_c * ((v_d @ xi) @ phi.T)
    dv = (hidden @ xi.T - v) / tau_f
    dv_d = (beta_d * g - v_d) / tau_d
    return dv, dv_d


def lisem_energy(
    v: Tensor, v_d: Tensor, xi: Tensor, phi: Tensor, *, alpha_s: float, alpha_c: float, gamma: float
) -> Tensor:
    """LISEM's energy at fixed delay signal, per batch row.

    ``E = vᵀg − L_f(v) − ½ α_s gᵀ Ξ Ξᵀ g − α_c gᵀ Ξ Φ Ξᵀ v_d`` with
    ``L_f(v) = Σ_i log cosh(γ v_i) / γ`` (the Lagrangian whose gradient is g).
    Its gradient is ``∂E/∂v = −T_f g'(v) ⊙ dv/dt``, so the feature flow never
    raises it; only the slow motion of ``v_d`` (through α_c) can.

    Returns:
        [B] energies.
    """
    g = lisem_output(v, gamma)
    # log cosh(x) = |x| + log1p(exp(-2|x|)) - log 2, stable for large |x|.
    gv = (gamma * v).abs()
    lagrangian = (gv + torch.log1p(torch.exp(-2 * gv)) - math.log(2.0)).sum(-1) / gamma
    overlap = g @ xi
    self_term = 0.5 * alpha_s * (overlap * overlap).sum(-1)
    cross_term = alpha_c * (overlap * ((v_d @ xi) @ phi.T)).sum(-1)
    return (v * g).sum(-1) - lagrangian - self_term - cross_term


def dsem_hidden_input(v: Tensor, v_d: Tensor, xi: Tensor, phi: Tensor, *, alpha_s: float, alpha_c: float) -> Tensor:
    """DSEM's hidden (memory) input ``h = √α_s Ξᵀ v + α_c Φ Ξᵀ v_d``, [B, K]."""
    return math.sqrt(alpha_s) * (v @ xi) + alpha_c * ((v_d @ xi) @ phi.T)


def dsem_vector_field(
    v: Tensor,
    v_d: Tensor,
    xi: Tensor,
    phi: Tensor,
    *,
    alpha_s: float,
    alpha_c: float,
    gamma: float,
    tau_f: float,
    tau_d: float,
    beta_d: float,
) -> tuple[Tensor, Tensor]:
    """Time derivatives of DSEM's feature and delay states.

    ``T_f dv/dt = √α_s Ξ softmax(γ h) − v`` and ``T_d dv_d/dt = β_d v − v_d``
    (paper, model B: the hidden layer is fast, T_h → 0, so it sits at
    ``h`` from :func:`dsem_hidden_input`; σ_f is the identity).

    Returns:
        ``(dv/dt, dv_d/dt)``, each [B, N].
    """
    h = dsem_hidden_input(v, v_d, xi, phi, alpha_s=alpha_s, alpha_c=alpha_c)
    p = torch.softmax(gamma * h, dim=-1)
    dv = (math.sqrt(alpha_s) * (p @ xi.T) - v) / tau_f
    dv_d = (beta_d * v - v_d) / tau_d
    return dv, dv_d


def dsem_energy(
    v: Tensor, v_d: Tensor, xi: Tensor, phi: Tensor, *, alpha_s: float, alpha_c: float, gamma: float
) -> Tensor:
    """DSEM's energy at fixed delay signal, per batch row.

    The general energy ``[vᵀv − ½‖v‖²] + [hᵀσ_h − L_h(h)] − √α_s vᵀΞσ_h −
    α_c σ_hᵀ Φ Ξᵀ v_d``, with ``L_h(h) = logsumexp(γ h)/γ`` and the hidden
    layer at its fast fixed point ``h`` (:func:`dsem_hidden_input`), collapses
    to ``E = ½‖v‖² − logsumexp(γ h)/γ``: the interaction terms cancel
    ``hᵀσ_h``. Its gradient is ``∂E/∂v = −T_f dv/dt``.

    The reference code's ``get_energy`` drops α_c from the last term and γ
    from the Lagrangian; with those the terms do not cancel and the energy is
    not a Lyapunov function of its own dynamics, so we keep both.

    Returns:
        [B] energies.
    """
    h = dsem_hidden_input(v, v_d, xi, phi, alpha_s=alpha_s, alpha_c=alpha_c)
    return 0.5 * (v * v).sum(-1) - torch.logsumexp(gamma * h, dim=-1) / gamma
