"""CUDA against CPU: every agent's R, and the spiking simulator's state, agree within stated tolerances.

Skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs this file on a
GPU machine. Exact equality is not expected: cuBLAS and cuDNN sum in other
orders than the CPU's kernels, scatter/index_add use atomics whose order varies
between runs, and cuDNN convolutions use TF32 by default. Each leaves rounding
differences of about 1e-6 (TF32: 1e-3) that can flip a test item sitting on a
decision boundary.

Tolerances:

- Agents that draw their random numbers on the CPU and move them to the device
  (every agent but the spiking ones) see the same minibatches, replay draws and
  initial weights on both devices, so R differs only by such flips:
  ``|R_cuda - R_cpu| <= 0.02`` on 200 test items per experience (4 items).
- Spiking agents draw their Poisson spike trains with a CUDA generator (drawing
  them on the CPU and copying them would cost the GPU its speed), so their
  spike trains differ from the CPU's; recurrent (sequence) agents compound
  rounding over time steps; RL agents' trajectories diverge once one greedy
  action differs. For these, CUDA must be as close to CPU as CPU with seed 1 is
  to CPU with seed 0: ``|R_cuda - R_cpu| <= max(0.05, 2 * max|R_cpu,seed1 - R_cpu,seed0|)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agent_cases import CASES, IDS, kinds_of, tiny_run

from replaybench.spiking.encoding import poisson
from replaybench.spiking.models import DiehlCookConfig, PresentationConfig, build_diehl_cook
from replaybench.stream_checks import TinySize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SIZE = TinySize(experiences=2, train_items=200, test_items=200)
SAME_DRAWS_ATOL = 0.02
DEVICE_DRAWS = frozenset({"snn", "snn-features", "lc-snn"})
"""Agents whose spiking models draw on a generator of their own device (spiking/models.py)."""


def _draws_on_device(name: str, options: dict) -> bool:
    return name in DEVICE_DRAWS or options.get("learner") == "stdp"


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_cuda_gives_the_cpu_R(name, options):
    if name.startswith("avalanche:"):
        pytest.importorskip("avalanche")
    cpu = tiny_run(name, options, "cpu", size=SIZE)
    cuda = tiny_run(name, options, "cuda", size=SIZE)
    assert cuda.costs["peak_cuda_mb"] > 0, "nothing was allocated on the GPU: the agent ignores `device`"
    R_cpu, R_cuda = np.array(cpu.R), np.array(cuda.R)
    assert np.isfinite(R_cuda).all()
    if _draws_on_device(name, options) or kinds_of(name, options) & {"rl", "sequence"}:
        spread = np.abs(np.array(tiny_run(name, options, "cpu", seed=1, size=SIZE).R) - R_cpu).max()
        atol = max(0.05, 2 * spread)
    else:
        atol = SAME_DRAWS_ATOL
    assert np.abs(R_cuda - R_cpu).max() <= atol, f"R on CPU {R_cpu.tolist()}, on CUDA {R_cuda.tolist()}"


def _diehl_cook(device: str):
    config = DiehlCookConfig(n_neurons=50, inh_strength=120.0, theta_plus=0.05)
    return build_diehl_cook((1, 8, 8), config, seed=0, presentation=PresentationConfig(time_steps=80), device=device)


@pytest.mark.parametrize("learning", [False, True])
def test_the_simulator_state_matches_for_a_fixed_input(learning):
    # The same spike trains on both devices (drawn once, on the CPU): no random number is drawn after this.
    spikes = poisson(torch.rand(16, 64), time_steps=80, generator=torch.Generator().manual_seed(0))
    models = {device: _diehl_cook(device) for device in ("cpu", "cuda")}
    for device, model in models.items():
        model.network.run({"X": spikes.clone().to(device)}, learning=learning)
    cpu, cuda = (models[d].network for d in ("cpu", "cuda"))
    counts_cpu, counts_cuda = cpu.monitors["counts"].counts, cuda.monitors["counts"].counts.cpu()
    # Same input, no random draws: the devices differ only by ~1e-6 rounding in the input current, and a
    # crossing that close to threshold is improbable in 16 x 50 x 80 neuron-steps, so the spikes must agree.
    assert counts_cpu.sum() > 0
    torch.testing.assert_close(counts_cuda, counts_cpu, atol=0, rtol=0)
    for name in ("Ae", "Ai"):
        torch.testing.assert_close(cuda.layers[name].v.cpu(), cpu.layers[name].v, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(cuda.layers["Ae"].theta.cpu(), cpu.layers["Ae"].theta, atol=1e-4, rtol=1e-4)
    weight_cpu, weight_cuda = cpu.connections["X->Ae"].weight, cuda.connections["X->Ae"].weight.cpu()
    torch.testing.assert_close(weight_cuda, weight_cpu, atol=1e-4, rtol=1e-4)
    if not learning:
        assert torch.equal(weight_cpu, _diehl_cook("cpu").network.connections["X->Ae"].weight)
