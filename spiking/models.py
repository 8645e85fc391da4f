"""Networks: Diehl & Cook 2015, LC-SNN and a convolutional SNN.

Constants follow BindsNET's ``models.py`` (``DiehlAndCook2015``) and the
lab's experiment scripts (BINDS-LAB-UMASS/bindsnet_experiments) as collected
in ``docs/spiking.md``. Every builder returns a :class:`SpikingModel`, which
encodes images, presents them and returns the output layer's spike counts.

Example:
    >>> model = build_diehl_cook((1, 4, 4), DiehlCookConfig(n_neurons=5), seed=0)
    >>> model.present(torch.rand(2, 1, 4, 4), learning=False).counts.shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replaybench.errors import ConfigError
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, param
from replaybench.spiking.encoding import bernoulli, poisson
from replaybench.spiking.learning import PostPre, STDPParams, WeightDependentPostPre
from replaybench.spiking.network import Network, SpikeCounter, SpikeRecorder
from replaybench.spiking.nodes import AdaptiveLIFNodes, AdaptiveParams, InputNodes, LIFNodes, LIFParams
from replaybench.spiking.topology import (
    Conv2dConnection,
    DenseConnection,
    LateralInhibition,
    LocalConnection2d,
    OneToOne,
)

EXCITATORY = LIFParams(rest=-65.0, reset=-60.0, thresh=-52.0, tau_m=100.0, refractory=5.0)
"""Diehl & Cook's excitatory neurons (BindsNET ``DiehlAndCook2015``)."""
INHIBITORY = LIFParams(rest=-60.0, reset=-45.0, thresh=-40.0, tau_m=10.0, refractory=2.0)
"""Diehl & Cook's inhibitory neurons."""

_POS = Interval(float, 0, None, closed="neither")
_NONNEG = Interval(float, 0, None)
_RULES = {"postpre": PostPre, "weight-dependent": WeightDependentPostPre}


@dataclass(frozen=True)
class PresentationConfig(Config):
    """How one sample is encoded and presented."""

    time_steps: int = param(250, Interval(int, 1, None))
    """Steps per presentation (Diehl & Cook: 350 ms; BindsNET examples: 250)."""
    dt: float = param(1.0, _POS)
    """Step in ms."""
    encoder: str = param("poisson", OneOf("poisson", "bernoulli"))
    """Spike encoder."""
    max_rate_hz: float = param(128.0, _NONNEG)
    """Poisson rate at intensity 1."""
    max_prob: float = param(1.0, Interval(float, 0, 1))
    """Bernoulli spike probability at intensity 1."""


@dataclass(frozen=True)
class DiehlCookConfig(Config):
    """Diehl & Cook (2015) as in BindsNET: input -> excitatory <-> inhibitory."""

    n_neurons: int = param(100, Interval(int, 1, None))
    """Excitatory (and inhibitory) neurons."""
    exc_strength: float = param(22.5, _NONNEG)
    """Excitatory -> inhibitory one-to-one weight."""
    inh_strength: float = param(17.5, _NONNEG)
    """Inhibitory -> excitatory all-but-self inhibition (BindsNET examples: 120)."""
    nu_pre: float = param(1e-4, _NONNEG)
    """Depression rate."""
    nu_post: float = param(1e-2, _NONNEG)
    """Potentiation rate."""
    rule: str = param("postpre", OneOf(*_RULES))
    """STDP rule of the input weights."""
    reduction: str = param("sum", OneOf("sum", "mean", "max"))
    """Batch reduction of the weight updates."""
    norm_per_input: float = param(0.1, _POS)
    """Each neuron's input weights sum to this times the input size (78.4 for 784)."""
    init_scale: float = param(0.3, _POS)
    """Initial weights are ``init_scale * U(0, 1)``."""
    theta_plus: float = param(0.05, _NONNEG)
    """Adaptive threshold increment."""
    tau_theta: float = param(1e7, _POS)
    """Adaptive threshold time constant (ms)."""
    one_spike: bool = param(True, InstanceOf(bool))
    """At most one excitatory spike per sample and step (BindsNET's default)."""
    theta_reduction: str = param("sum", OneOf("sum", "mean", "max"))
    """Batch reduction of the threshold increments (BindsNET: sum). Sum is also the best
    with ``reduction="max"`` at B = 16 and 64 (docs/spiking.md, "Batch reduction")."""


@dataclass(frozen=True)
class LocalSNNConfig(Config):
    """LC-SNN (Saunders et al. 2019) or its convolutional sibling.

    With ``shared_weights`` the filters are convolutional (Saunders et al.
    2018); otherwise each location has its own (locally connected).
    """

    n_filters: int = param(25, Interval(int, 1, None))
    """Filters per location."""
    kernel_size: int = param(12, Interval(int, 1, None))
    """Receptive-field side."""
    stride: int = param(4, Interval(int, 1, None))
    """Step between receptive fields."""
    crop: int | None = param(20, Optional(Interval(int, 1, None)))
    """Centre-crop images to this side first (LC-SNN: 20), or ``None``."""
    shared_weights: bool = param(False, InstanceOf(bool))
    """Convolutional (shared) instead of locally connected filters."""
    inh_strength: float = param(250.0, _NONNEG)
    """Inhibition between filters at one location."""
    nu_pre: float = param(0.0, _NONNEG)
    """Depression rate (LC-SNN: 0, potentiation only)."""
    nu_post: float = param(1e-2, _NONNEG)
    """Potentiation rate."""
    reduction: str = param("sum", OneOf("sum", "mean", "max"))
    """Batch reduction of the weight updates."""
    norm_per_kernel_area: float = param(0.2, _POS)
    """Each filter's weights sum to this times ``kernel_size**2``."""
    theta_plus: float = param(0.05, _NONNEG)
    """Adaptive threshold increment."""
    tau_theta: float = param(1e7, _POS)
    """Adaptive threshold time constant (ms)."""
    one_spike: bool = param(True, InstanceOf(bool))
    """At most one spike per sample and step in the whole output layer, as in BindsNET's
    ``LocallyConnectedNetwork`` (its ``DiehlAndCookNodes`` default "to avoid multiple spikes
    per timestep"). It also gives the 2-gram readout a strict firing order."""


@dataclass
class Presentation:
    """What :meth:`SpikingModel.present` observed: counts ``[B, n]``, spikes ``[T, B, n]`` if recorded."""

    counts: torch.Tensor
    spikes: torch.Tensor | None = None


class SpikingModel:
    """A network with one input layer ``"X"`` and one output layer, plus its encoder."""

    def __init__(
        self,
        *,
        network: Network,
        output: str,
        image_shape: tuple[int, ...],
        presentation: PresentationConfig,
        crop: int | None = None,
        generator: torch.Generator,
    ) -> None:
        self.network, self.output, self.crop = network, output, crop
        self.image_shape, self.presentation, self.generator = tuple(image_shape), presentation, generator
        self.input_shape = network.layers["X"].shape
        layer = network.layers[output]
        network.add_monitor("counts", SpikeCounter(layer))
        self._recorder = SpikeRecorder(layer)

    @property
    def n_outputs(self) -> int:
        return self.network.layers[self.output].n

    @property
    def plastic_synapses(self) -> int:
        return sum(c.n_synapses for c in self.network.plastic)

    def to(self, device: str | torch.device) -> SpikingModel:
        self.network.to(device)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, *image_shape]`` in [0, 1] to input spikes ``[T, B, *input_shape]``."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"Expected images of shape [B, {', '.join(map(str, self.image_shape))}]. "
                f"Got {list(images.shape)} instead."
            )
        if self.crop is not None:
            h, w = images.shape[-2:]
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            images = images[..., top : top + self.crop, left : left + self.crop]
        images = images.reshape(images.shape[0], *self.input_shape).float()
        p = self.presentation
        if p.encoder == "poisson":
            return poisson(
                images, time_steps=p.time_steps, dt=p.dt, max_rate_hz=p.max_rate_hz, generator=self.generator
            )
        return bernoulli(images, time_steps=p.time_steps, max_prob=p.max_prob, generator=self.generator)

    def present(self, images: torch.Tensor, *, learning: bool, record: bool = False) -> Presentation:
        """Encode and present a batch; return the output layer's counts (and spikes)."""
        spikes = self.encode(images)
        if record:
            self.network.monitors["record"] = self._recorder
        try:
            self.network.run({"X": spikes}, learning=learning)
        finally:
            self.network.monitors.pop("record", None)
        counts = self.network.monitors["counts"].counts
        return Presentation(counts=counts, spikes=self._recorder.spikes if record else None)

    def set_rate_scale(self, scale: float) -> None:
        """Multiply every plastic connection's learning rates by ``scale``."""
        for connection in self.network.plastic:
            connection.rule.rate_scale = scale


def build_diehl_cook(
    image_shape: tuple[int, ...],
    config: DiehlCookConfig,
    *,
    seed: int,
    presentation: PresentationConfig = PresentationConfig(),
    device: str = "cpu",
) -> SpikingModel:
    """Diehl & Cook 2015: Poisson input -> adaptive excitatory layer <-> inhibitory layer."""
    generator = torch.Generator(device=device).manual_seed(seed)
    init = torch.Generator().manual_seed(seed)
    n_input = int(torch.tensor(image_shape).prod())
    n = config.n_neurons
    net = Network(dt=presentation.dt)
    x = net.add_layer("X", InputNodes(shape=(n_input,)))
    adaptive = AdaptiveParams(
        theta_plus=config.theta_plus,
        tau_theta=config.tau_theta,
        one_spike=config.one_spike,
        reduction=config.theta_reduction,
    )
    exc = net.add_layer("Ae", AdaptiveLIFNodes(shape=(n,), params=EXCITATORY, adaptive=adaptive, generator=generator))
    inh = net.add_layer("Ai", LIFNodes(shape=(n,), params=INHIBITORY))
    rule = _RULES[config.rule](
        params=STDPParams(nu_pre=config.nu_pre, nu_post=config.nu_post), reduction=config.reduction
    )
    net.add_connection(
        "X",
        "Ae",
        DenseConnection(
            source=x,
            target=exc,
            weight=config.init_scale * torch.rand(n_input, n, generator=init),
            norm=config.norm_per_input * n_input,
            rule=rule,
        ),
    )
    net.add_connection("Ae", "Ai", OneToOne(source=exc, target=inh, strength=config.exc_strength))
    net.add_connection("Ai", "Ae", LateralInhibition(source=inh, target=exc, strength=config.inh_strength))
    model = SpikingModel(
        network=net, output="Ae", image_shape=image_shape, presentation=presentation, generator=generator
    )
    return model.to(device)


def build_local_snn(
    image_shape: tuple[int, ...],
    config: LocalSNNConfig,
    *,
    seed: int,
    presentation: PresentationConfig = PresentationConfig(max_rate_hz=127.5),
    device: str = "cpu",
) -> SpikingModel:
    """LC-SNN (or, with ``shared_weights``, a convolutional SNN) with inhibition between filters."""
    if len(image_shape) != 3:
        raise ConfigError(f"build_local_snn needs images of shape (C, H, W). Got {image_shape} instead.")
    channels, height, width = image_shape
    side = min(height, width) if config.crop is None else config.crop
    if side > min(height, width):
        raise ConfigError(
            f"The 'crop' parameter of LocalSNNConfig must be at most {min(height, width)} for images "
            f"of shape {tuple(image_shape)}. Got {config.crop} instead."
        )
    generator = torch.Generator(device=device).manual_seed(seed)
    init = torch.Generator().manual_seed(seed)
    k, stride, filters = config.kernel_size, config.stride, config.n_filters
    if k > side:
        raise ConfigError(f"The 'kernel_size' parameter of LocalSNNConfig must be at most {side}. Got {k} instead.")
    out = (side - k) // stride + 1
    net = Network(dt=presentation.dt)
    x = net.add_layer("X", InputNodes(shape=(channels, side, side)))
    adaptive = AdaptiveParams(theta_plus=config.theta_plus, tau_theta=config.tau_theta, one_spike=config.one_spike)
    y = net.add_layer(
        "Y", AdaptiveLIFNodes(shape=(filters, out, out), params=EXCITATORY, adaptive=adaptive, generator=generator)
    )
    rule = PostPre(params=STDPParams(nu_pre=config.nu_pre, nu_post=config.nu_post), reduction=config.reduction)
    norm = config.norm_per_kernel_area * k * k
    if config.shared_weights:
        weight = torch.rand(filters, channels, k, k, generator=init)
        conn = Conv2dConnection(source=x, target=y, weight=weight, kernel_size=k, stride=stride, norm=norm, rule=rule)
    else:
        weight = torch.rand(out * out, channels * k * k, filters, generator=init)
        conn = LocalConnection2d(source=x, target=y, weight=weight, kernel_size=k, stride=stride, norm=norm, rule=rule)
    conn.normalize_()
    net.add_connection("X", "Y", conn)
    net.add_connection("Y", "Y", LateralInhibition(source=y, target=y, strength=config.inh_strength, competition_dim=0))
    model = SpikingModel(
        network=net,
        output="Y",
        image_shape=image_shape,
        presentation=presentation,
        crop=config.crop,
        generator=generator,
    )
    return model.to(device)
