"""Sleep Replay Consolidation (SRC) in the spiking simulator.

Tadros, Krishnan, Ramyaa & Bazhenov, *Nat. Commun.* 13:7742 (2022). The
algorithm and its constants follow the authors' MATLAB code, [M]
``tmtadros/SleepReplayConsolidation`` (commit e02a72e): ``sleep/sleepnn_old.m``,
``utils/normalize_nn_data.m``, ``utils/create_masked_input.m`` and
``{MNIST,FashionMNIST}/run_class_task_summary.m`` (docs/replay.md describes
the port and its measured results).

A bias-free ReLU network ``W_1 … W_L`` (``nn.Linear`` layout ``[out, in]``)
becomes a stack of integrate-and-fire layers. Each of ``T_k`` steps:

1. input: a random ``side x side`` patch of the mean input image; pixel ``i``
   spikes with probability ``min(1, 2·dt·max_rate·x_i)``;
2. layer by layer: ``v ← decay·v + α_l·W_l·s_{l-1}``; ``s_l = [v ≥ β_l]``;
   ``v ← 0`` where it spiked (no refractory period, no leak towards a rest
   other than 0, no inhibition, no bias);
3. plasticity on the columns of the post neurons that spiked, in raw weight
   units: ``ΔW = g(W) ⊙ [post ⊗ ((inc+dec)·pre − dec)]`` with
   ``g(w) = 2·sigmoid(−1000·w)``.

The slept raw weights replace the network's (no renormalisation).

Mapping onto the simulator:

- ``LIFNodes`` with rest 0, reset 0, threshold ``β_l``, refractory 0 and
  ``tau_m = −dt / ln(decay)``. The simulator's ``dt`` is in ms and [M]'s in
  seconds: ``Network(dt=1000·config.dt)``, so [M]'s ``dt = 0.001 s`` is one
  1 ms step and ``decay = 0.999`` gives ``tau_m ≈ 999.5 ms``.
- ``DenseConnection`` stores ``weight[n_pre, n_post]``: it carries
  ``α_l·W_lᵀ``, and :class:`SRCPlasticity` divides by ``α_l`` to read ``g`` in
  raw units and multiplies its update by ``α_l``.
- Timing: the simulator's default (synchronous) step computes every layer's
  input from the previous step's spikes, so a spike would reach layer ``l``
  ``l`` steps after the input, and plasticity would pair a post spike with
  the pre spikes of the step *after* the ones that caused it. [M] updates
  layers in order within a step. The sleep network is therefore built with
  ``Network(in_order=True)``, which computes each layer's input just before it
  updates: a spike crosses the whole stack in one step and the rule pairs a
  post spike with the pre spikes that caused it, as in [M].
- Batch size 1: the weights change every step, so sleep is sequential in time.
  It runs on the CPU whatever the weights' device (a GPU has nothing to
  parallelise at batch 1; the CPU has the simulator's fused kernels), and the
  slept weights are copied back to the caller's tensors.
- Cost: at MNIST's firing rates the per-step Python dispatch of the simulator
  (about 70-130 µs per step for three layers on this machine) dominates, not the arithmetic; the
  rule touches only the columns of post neurons that spiked, one gather and one
  scatter per layer per step when any did.

Example:
    >>> import torch
    >>> weights = [torch.randn(6, 16) * 0.05, torch.randn(3, 6) * 0.05]
    >>> config = SRCConfig(betas=(1.0, 1.0), steps_scale=0.01, mask_side=None)
    >>> maxima = activation_maxima(weights, torch.rand(20, 16))
    >>> stats = sleep(weights, torch.rand(16), maxima, 0, config, torch.Generator().manual_seed(0))
    >>> stats["steps"]
    150.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from replaybench.errors import ConfigError, DivergenceError
from replaybench.params import Config, InstanceOf, Interval, Optional, param
from replaybench.spiking.learning import LearningRule
from replaybench.spiking.network import Network
from replaybench.spiking.nodes import InputNodes, LIFNodes, LIFParams
from replaybench.spiking.topology import DenseConnection

_POSITIVE = Interval(float, 0, None, closed="neither")

G_SHARPNESS = 1000.0
"""``g(w) = 2·sigmoid(−G_SHARPNESS·w)``: 1/0.001 in ``sleepnn_old.m`` [M]."""


@dataclass(frozen=True)
class SRCConfig(Config):
    """Constants of one SRC sleep; the defaults are [M]'s MNIST set (:data:`SRC_CONSTANTS`)."""

    max_rate: float = param(239.515363, _POSITIVE)
    """Input firing rate (Hz) of a pixel of intensity 1/2: spike probability ``min(1, 2·dt·max_rate·x)``."""
    inc: float = param(0.032064, Interval(float, 0, None))
    """Potentiation per step of a synapse whose pre and post neurons both spiked (times ``g(W)``)."""
    dec: float = param(0.003344, Interval(float, 0, None))
    """Depression per step of a synapse whose post neuron spiked and pre neuron did not (times ``g(W)``)."""
    betas: tuple[float, ...] = param((14.548273, 44.560317, 38.046326), InstanceOf(tuple))
    """Firing threshold β_l of each layer, input side first (one per weight matrix)."""
    alpha_scale: float = param(55.882454, _POSITIVE)
    """Numerator of the layers' input scale factors α (:func:`scale_factors`)."""
    dt: float = param(0.001, _POSITIVE)
    """Time step in seconds (the simulator runs it as ``1000·dt`` ms)."""
    decay: float = param(0.999, Interval(float, 0, 1, closed="neither"))
    """Membrane decay per step (``exp(−dt/tau_m)``)."""
    base_steps: int = param(15000, Interval(int, 0, None))
    """Steps of the sleep after the first task."""
    steps_per_task: int = param(5000, Interval(int, 0, None))
    """Extra steps per task already learned: ``T_k = base_steps + steps_per_task·k`` (k 0-based)."""
    mask_side: int | None = param(11, Optional(Interval(int, 0, None)))
    """Side of the random square patch of the mean image shown each step; 0 or None: the whole image."""
    steps_scale: float = param(1.0, _POSITIVE)
    """Multiplies ``T_k`` (to shorten sleep)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.betas or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b > 0 for b in self.betas
        ):
            raise ConfigError(
                f"The 'betas' parameter of SRCConfig must be a non-empty tuple of positive floats. "
                f"Got {self.betas!r} instead."
            )
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def steps(self, task_index: int) -> int:
        """``T_k = round(steps_scale·(base_steps + steps_per_task·k))``, ``k`` 0-based."""
        return round(self.steps_scale * (self.base_steps + self.steps_per_task * task_index))


SRC_CONSTANTS: dict[str, SRCConfig] = {
    # [M] MNIST/run_class_task_summary.m (sleep parameters of the class-incremental run).
    "mnist": SRCConfig(),
    # [M] FashionMNIST/run_class_task_summary.m.
    "fashion-mnist": SRCConfig(
        max_rate=181.047258,
        inc=0.041001,
        dec=0.003344,
        betas=(40.446884, 27.596929, 33.109393),
        alpha_scale=31.592987,
    ),
}
"""[M]'s tuned constants for its 784-1200-1200-10 networks, by dataset."""


def scale_factors(weights: list[torch.Tensor], maxima: list[float], alpha_scale: float) -> list[float]:
    """Input scale factor α_l of each layer ([M] ``utils/normalize_nn_data.m``).

    ``λ_l = max(largest positive weight of W_l, largest activation of layer l)``;
    ``applied_1 = λ_1``, ``applied_l = λ_l / applied_{l−1}``; ``α_l = alpha_scale / applied_l``.
    For three layers: ``α = s·[1/λ_1, λ_1/λ_2, λ_2/(λ_1·λ_3)]``.

    Args:
        weights: ``W_l`` as ``[out, in]``.
        maxima: Largest activation of each layer's output (:func:`activation_maxima`).
        alpha_scale: ``s``.

    Example:
        >>> scale_factors([torch.tensor([[0.5]]), torch.tensor([[0.1]])], [2.0, 4.0], 1.0)
        [0.5, 0.5]
    """
    if len(weights) != len(maxima):
        raise ConfigError(f"Expect one activation maximum per weight layer ({len(weights)}), actually: {len(maxima)}.")
    alphas, applied = [], 1.0
    for index, (weight, top) in enumerate(zip(weights, maxima)):
        lam = max(float(weight.max().clamp_min(0.0)), float(top))
        if not (math.isfinite(lam) and lam > 0):
            raise DivergenceError(f"SRC cannot scale layer {index + 1}: its largest weight/activation is {lam}.")
        applied = lam if index == 0 else lam / applied
        alphas.append(alpha_scale / applied)
    return alphas


@torch.no_grad()
def activation_maxima(weights: list[torch.Tensor], x: torch.Tensor, *, hidden_scale: float = 1.0) -> list[float]:
    """Largest activation of each layer of the bias-free ReLU network on ``x`` ``[N, in]``.

    Args:
        weights: ``W_l`` as ``[out, in]``.
        x: Inputs, flattened to ``[N, in]``.
        hidden_scale: Multiplies hidden activations as they pass on: 0.75 reproduces [M]'s
            non-inverted dropout at test time (dropout 0.25); PyTorch's inverted dropout needs 1.
    """
    h = x.reshape(len(x), -1).to(weights[0].dtype)
    maxima = []
    for index, weight in enumerate(weights):
        h = torch.relu(h @ weight.t())
        if index < len(weights) - 1:
            h = h * hidden_scale
        maxima.append(float(h.max()) if h.numel() else 0.0)
    return maxima


class SRCPlasticity(LearningRule):
    """SRC's rule on a connection carrying ``scale·Wᵀ`` ([M] ``sleepnn_old.m``).

    ``ΔW = g(W) ⊙ [post ⊗ ((inc+dec)·pre − dec)]`` in raw units, ``g(w) = 2·sigmoid(−1000·w)``,
    summed over the batch; only the columns of post neurons that spiked change. The STDP
    rates of the base class are unused.

    Args:
        inc: Potentiation where pre and post spiked.
        dec: Depression where only post spiked.
        scale: The connection's weight is ``scale`` times the raw weight.
    """

    def __init__(self, *, inc: float, dec: float, scale: float) -> None:
        super().__init__()
        self.inc, self.dec, self.scale = float(inc), float(dec), float(scale)
        self.post_spikes = 0
        """Post spikes seen by :meth:`update` (the sleep's firing rates, without a monitor's per-step cost)."""

    def update(self, connection) -> None:
        post = connection.target.s.reshape(connection.target.batch_size, -1)
        single = post.shape[0] == 1
        # Batch 1 (sleep): the spiking post neurons are the columns to update, found in one call.
        cols = post.view(-1).nonzero().view(-1) if single else post.any(0).nonzero().view(-1)
        if cols.numel() == 0:
            return
        pre = connection.source.s.reshape(connection.source.batch_size, -1)
        weight = connection.weight
        block = weight[:, cols]  # [n_pre, k], scaled units
        if single:  # the pre term is one column shared by every spiking post neuron
            self.post_spikes += cols.numel()
            drive = torch.where(pre[0], self.inc, -self.dec)[:, None]
        else:
            post = post[:, cols].float()
            self.post_spikes += int(post.sum())
            drive = ((self.inc + self.dec) * pre.float() - self.dec).t() @ post
        # g in raw units: 2·sigmoid(−1000·block/scale); the update goes back in scaled units.
        g = torch.sigmoid(block * (-G_SHARPNESS / self.scale))
        weight[:, cols] = block.addcmul_(g, drive, value=2.0 * self.scale)


def sleep_input(input_mean: torch.Tensor, steps: int, config: SRCConfig, generator: torch.Generator) -> torch.Tensor:
    """Input spikes ``[steps, 1, n]``: each step a random patch of the mean image, Bernoulli per pixel.

    A flat ``input_mean`` of ``n = h·h`` values is a square image; ``[..., H, W]`` is used as is (the
    patch covers all channels). A patch larger than the image is the whole image.
    """
    mean = input_mean.detach().float().cpu()
    if mean.dim() == 1:
        side = math.isqrt(mean.numel())
        shape = (1, side, side) if side * side == mean.numel() else (1, 1, mean.numel())
    else:
        shape = (-1, *mean.shape[-2:])
    image = mean.reshape(shape)
    _, height, width = image.shape
    prob = (2.0 * config.dt * config.max_rate * image).clamp(0.0, 1.0)
    device = generator.device
    chunks = []
    for first in range(0, steps, 4096):
        count = min(4096, steps - first)
        u = torch.rand(count, *image.shape, generator=generator, device=device).cpu()
        spikes = u < prob
        if config.mask_side and (config.mask_side < height or config.mask_side < width):
            sides = (min(config.mask_side, height), min(config.mask_side, width))
            top = torch.randint(0, height - sides[0] + 1, (count, 1), generator=generator, device=device).cpu()
            left = torch.randint(0, width - sides[1] + 1, (count, 1), generator=generator, device=device).cpu()
            rows, cols = torch.arange(height), torch.arange(width)
            in_rows = (rows >= top) & (rows < top + sides[0])
            in_cols = (cols >= left) & (cols < left + sides[1])
            spikes &= (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
        chunks.append(spikes.reshape(count, 1, -1))
    return torch.cat(chunks) if chunks else torch.zeros(0, 1, mean.numel(), dtype=torch.bool)


def _check_finite(what: str, tensors: list[torch.Tensor]) -> None:
    for index, tensor in enumerate(tensors):
        if not bool(torch.isfinite(tensor).all()):
            raise DivergenceError(f"SRC sleep: {what} of layer {index + 1} are not finite.")


def build_network(weights: list[torch.Tensor], alphas: list[float], config: SRCConfig) -> Network:
    """The sleep network: input ``X``, layers ``L1 … LL`` of IF neurons, connections carrying ``α_l·W_lᵀ``."""
    dt_ms = 1000.0 * config.dt
    net = Network(dt=dt_ms, in_order=True)
    previous = net.add_layer("X", InputNodes(shape=(weights[0].shape[1],)))
    for index, (weight, alpha, beta) in enumerate(zip(weights, alphas, config.betas), start=1):
        params = LIFParams(rest=0.0, reset=0.0, thresh=beta, tau_m=-dt_ms / math.log(config.decay), refractory=0.0)
        layer = net.add_layer(f"L{index}", LIFNodes(shape=(weight.shape[0],), params=params))
        rule = SRCPlasticity(inc=config.inc, dec=config.dec, scale=alpha)
        connection = DenseConnection(
            source=previous,
            target=layer,
            weight=alpha * weight.detach().float().t(),
            wmin=-math.inf,
            wmax=math.inf,
            rule=rule,
        )
        net.add_connection("X" if index == 1 else f"L{index - 1}", f"L{index}", connection)
        previous = layer
    return net


@torch.no_grad()
def sleep(
    weights: list[torch.Tensor],
    input_mean: torch.Tensor,
    maxima: list[float],
    task_index: int,
    config: SRCConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Run one SRC sleep on the weights, which are modified in place.

    Args:
        weights: ``W_l`` as ``[out, in]`` (``nn.Linear.weight``), input side first.
        input_mean: Mean of the inputs seen so far, flat ``[in]`` (a square image) or ``[..., H, W]``.
        maxima: Largest activation of each layer on the data seen so far (:func:`activation_maxima`).
        task_index: 0-based index of the task just learned (sets the length ``T_k``).
        config: The constants (:data:`SRC_CONSTANTS`).
        generator: Draws the input spikes.

    Returns:
        ``steps``; ``rate_l``: spikes per neuron per step of layer ``l`` (``rate_0`` the input);
        ``weight_change``: ``‖ΔW‖ / ‖W‖`` over all layers (Frobenius).

    Raises:
        DivergenceError: The weights, the input or the membrane potentials are not finite.
    """
    if len(config.betas) != len(weights):
        raise ConfigError(f"Expect one threshold per weight layer ({len(weights)}), actually: {len(config.betas)}.")
    for index in range(1, len(weights)):
        if weights[index].shape[1] != weights[index - 1].shape[0]:
            raise ConfigError(
                f"Expect layer {index + 1}'s weight to take {weights[index - 1].shape[0]} inputs, "
                f"actually: {weights[index].shape[1]}."
            )
    if input_mean.numel() != weights[0].shape[1]:
        raise ConfigError(f"Expect an input mean of {weights[0].shape[1]} values, actually: {input_mean.numel()}.")
    _check_finite("the weights", weights)
    _check_finite("the input mean", [input_mean])
    alphas = scale_factors(weights, maxima, config.alpha_scale)
    steps = config.steps(task_index)
    # Batch 1 leaves a GPU nothing to parallelise; on the CPU the simulator's fused kernels apply.
    raw = [w.detach().float().cpu() for w in weights]
    net = build_network(raw, alphas, config)
    rules = [c.rule for c in net.connections.values()]
    input_spikes = 0
    if steps > 0:
        spikes = sleep_input(input_mean, steps, config, generator)
        input_spikes = int(spikes.sum())
        net.run({"X": spikes}, learning=True)
    connections = list(net.connections.values())
    _check_finite("the weights after sleep", [c.weight for c in connections])
    _check_finite("the membrane potentials", [layer.v for layer in list(net.layers.values())[1:]])
    slept = [(c.weight / alpha).t() for c, alpha in zip(connections, alphas)]
    change = sum(float((new - old).pow(2).sum()) for new, old in zip(slept, raw))
    norm = sum(float(old.pow(2).sum()) for old in raw)
    for weight, new in zip(weights, slept):
        weight.copy_(new)
    per_step = max(steps, 1)
    stats = {
        "steps": float(steps),
        "weight_change": math.sqrt(change / norm) if norm else 0.0,
        "rate_0": input_spikes / (raw[0].shape[1] * per_step),
    }
    for index, (weight, rule) in enumerate(zip(raw, rules), start=1):
        stats[f"rate_{index}"] = rule.post_spikes / (weight.shape[0] * per_step)
    return stats
