"""The offline phase of the replay agent: SRC for ANN learners, STDP sleep for spiking ones.

Sleep Replay Consolidation (Tadros et al. 2022, Nat. Commun. 13:7742) needs
no stored data: the mean of every input seen so far, and each layer's
largest activation on the data seen so far (which set the layers' scale
factors). :class:`SleepStatistics` keeps both as running statistics, and
they are counted in the agent's ``state_bytes``. The sleep itself runs in
the batched spiking simulator (:mod:`replaybench.spiking.src`).

An STDP learner sleeps natively: its network is presented the source's
items (or, without a source, noisy patches of the mean input) with
plasticity on and no labels for the weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn


class SleepStatistics:
    """Running mean of the inputs seen and running maxima of each layer's activations.

    Args:
        n_inputs: Width of a flattened input.
        n_layers: Weight layers of the learner.
    """

    def __init__(self, n_inputs: int, n_layers: int) -> None:
        self.mean = torch.zeros(n_inputs)
        self.maxima = [0.0] * n_layers
        self.seen = 0

    @torch.no_grad()
    def update(self, x: Tensor, layers: list[nn.Linear]) -> None:
        """Fold in an experience's inputs ``x`` (the maxima with the current weights)."""
        flat = x.flatten(1).float()
        n = len(flat)
        self.mean = (self.mean * self.seen + flat.sum(0)) / (self.seen + n)
        self.seen += n
        if layers:
            from replaybench.spiking import src as sleep_replay

            weights = [layer.weight.detach().cpu() for layer in layers]
            now = sleep_replay.activation_maxima(weights, flat)
            self.maxima = [max(a, float(b)) for a, b in zip(self.maxima, now)]

    @property
    def nbytes(self) -> int:
        """float32 mean and maxima, and the int64 count."""
        return 4 * (self.mean.numel() + len(self.maxima)) + 8


@torch.no_grad()
def src_phase(learner: Any, stats: SleepStatistics, task_index: int, config: Any) -> dict[str, float]:
    """Put the learner's weight layers to sleep in the simulator and keep the slept weights."""
    from replaybench.spiking import src as sleep_replay

    layers = learner.linear_layers()
    constants = dataclasses.replace(
        sleep_replay.SRC_CONSTANTS[config.src_constants], steps_scale=config.src_steps_scale
    )
    weights = [layer.weight.data for layer in layers]
    result = sleep_replay.sleep(weights, stats.mean, stats.maxima, task_index, constants, generator=learner.generator)
    return {f"src_{k}": float(v) for k, v in result.items()}


@torch.no_grad()
def stdp_sleep(
    learner: Any, x: Tensor | None, y: Tensor | None, config: Any, stats: SleepStatistics | None = None
) -> dict[str, float]:
    """Present replayed items, or noisy copies of the mean input, to the STDP network with plasticity on.

    With items, their labels go to the readout's records as a waking
    presentation's would; the weights never see a label. Without a source,
    ``config.sleep_presentations`` copies of the mean input seen so far, each
    pixel kept with probability 1/2, drive spontaneous activity (no labels).
    """
    from replaybench.agents.snn import _intensities

    spikes, presented = 0.0, 0
    bs = learner.config.batch_size
    if x is None:
        mean = stats.mean.view(1, *learner.input_shape)
        keep = torch.rand(config.sleep_presentations, *learner.input_shape, generator=learner.generator) < 0.5
        x, y = mean * keep, None
    x = x.view(len(x), *learner.input_shape)
    for first in range(0, len(x), bs):
        batch = _intensities(x[first : first + bs].to(learner.device))
        out = learner.model.present(batch, learning=True, record=learner.ngrams is not None)
        if y is not None:
            learner.rates.add(out.counts, y[first : first + bs])
            if learner.ngrams is not None:
                learner.ngrams.add(out.spikes, y[first : first + bs])
        spikes += out.counts.sum().item()
        presented += len(batch)
    return {"sleep_presentations": float(presented), "sleep_spikes_per_sample": spikes / max(presented, 1)}
