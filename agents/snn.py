"""Spiking agents: STDP features from the batched simulator in ``spiking/``.

- :class:`SNNFeatures` (unsupervised): the network learns by STDP on each
  experience's images; its embedding is the output layer's spike counts.
- :class:`SNNClassifier` (supervised): the same STDP features, read out by
  label assignment (Diehl & Cook 2015) from per-class spike rates recorded
  while training, without stored data. ``assignment`` says which records count;
  with "relabel" every label comes from spikes of the neuron's current weights,
  so what the classifier forgets is what the features forget (docs/spiking.md,
  "The readout in class-IL").

Labels are never used for learning the weights; the classifier uses them only
to assign neurons to classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from replaybench import progress
from replaybench.errors import ConfigError
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, param
from replaybench.protocols import Experience, Stream, tensor_bytes
from replaybench.spiking.models import (
    DiehlCookConfig,
    LocalSNNConfig,
    PresentationConfig,
    SpikingModel,
    build_diehl_cook,
    build_local_snn,
)
from replaybench.spiking.readout import ClassRates, NGramScores, all_activity, assign_labels, proportion_weighting


@dataclass(frozen=True)
class SNNConfig(Config):
    """Network, presentation and readout of the spiking agents."""

    architecture: str = param("diehl-cook", OneOf("diehl-cook", "lc-snn", "conv-snn"))
    """Diehl & Cook 2015, LC-SNN (Saunders et al. 2019) or a convolutional SNN."""
    n_neurons: int = param(100, Interval(int, 1, None))
    """Excitatory neurons (diehl-cook)."""
    n_filters: int = param(25, Interval(int, 1, None))
    """Filters per location (lc-snn, conv-snn)."""
    inh_strength: float | None = param(None, Optional(Interval(float, 0, None)))
    """Lateral inhibition; ``None``: 120 for diehl-cook (BindsNET's examples), 250 for lc-snn and conv-snn."""
    time_steps: int = param(100, Interval(int, 1, None))
    """Steps (ms) per presentation; the papers use 250-350, 100 keeps evaluation fast."""
    max_rate_hz: float = param(128.0, Interval(float, 0, None, closed="neither"))
    """Poisson rate of a pixel at intensity 1."""
    batch_size: int = param(16, Interval(int, 1, None))
    """Samples presented together; STDP updates are reduced over them."""
    reduction: str = param("sum", OneOf("sum", "mean", "max"))
    """Batch reduction of the STDP updates."""
    epochs: int = param(1, Interval(int, 1, None))
    """Passes over each experience."""
    readout: str = param("proportion", OneOf("proportion", "all-activity", "ngram"))
    """Vote of the classifier ("ngram" needs lc-snn or conv-snn)."""
    assignment: str = param("accumulate", OneOf("accumulate", "last-epoch", "relabel"))
    """Which training spikes assign the labels (docs/spiking.md, "The readout in class-IL"):
    "accumulate" every presentation of every experience; "last-epoch" only each experience's
    last epoch (BindsNET's ``eth_mnist`` protocol: the features as learned); "relabel" as
    "last-epoch", and a neuron that spiked while learning an experience loses its earlier
    record (its weights moved; a silent neuron's weights did not)."""
    eval_batch_size: int = param(128, Interval(int, 1, None))
    """Samples presented together when embedding or predicting."""
    kernel_size: int | None = param(None, Optional(Interval(int, 1, None)))
    """Receptive-field side (lc-snn, conv-snn); ``None``: LC-SNN's 12 on a 20x20 crop, or on
    smaller images the kernel that keeps its 3x3 grid of locations (8x8 digits: 4, stride 2)."""
    stride: int | None = param(None, Optional(Interval(int, 1, None)))
    """Step between receptive fields (lc-snn, conv-snn); ``None``: 4 on a 20x20 crop, side/5 below."""
    one_spike: bool = param(True, InstanceOf(bool))
    """At most one output spike per sample and step (BindsNET's ``DiehlAndCookNodes`` default,
    used by both its ``DiehlAndCook2015`` and its ``LocallyConnectedNetwork``)."""


def _local_geometry(side: int, config: SNNConfig) -> tuple[int, int, int]:
    """Crop, kernel and stride of lc-snn / conv-snn on images of (smallest) side ``side``.

    Saunders et al. (2019) crop MNIST to 20x20 and use kernel 12, stride 4: a 3x3 grid of
    overlapping fields. Smaller images keep that grid (stride ~ crop/5, kernel = crop - 2
    strides) rather than one field covering the whole image, which is not locally connected.
    """
    crop = min(20, side)
    stride = config.stride if config.stride is not None else max(1, round(crop / 5))
    kernel = config.kernel_size if config.kernel_size is not None else max(1, crop - 2 * stride)
    return crop, min(kernel, crop), stride


def _intensities(x: torch.Tensor) -> torch.Tensor:
    """Images as intensities in [0, 1]; rescales each sample only if it leaves that range."""
    x = x.float()
    if x.numel() == 0 or (x.min() >= 0 and x.max() <= 1):
        return x
    flat = x.reshape(len(x), -1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(x)


class _SpikingAgent:
    """What both agents share: building the network and presenting data."""

    Config: ClassVar[type[SNNConfig]] = SNNConfig

    def __init__(self, *, stream: Stream, config: SNNConfig, seed: int, device: str = "cpu") -> None:
        if not isinstance(config, SNNConfig):
            raise ConfigError(f"{type(self).__name__} needs an SNNConfig. Got {type(config).__name__} instead.")
        shape = tuple(stream.input_shape)
        if config.architecture != "diehl-cook" and len(shape) != 3:
            raise ConfigError(
                f"The '{config.architecture}' architecture needs image input [C, H, W]; "
                f"stream {stream.name} gives {shape}."
            )
        if config.readout == "ngram" and config.architecture == "diehl-cook":
            raise ConfigError("The 'ngram' readout needs the lc-snn or conv-snn architecture.")
        if config.readout == "ngram" and config.assignment == "relabel":
            raise ConfigError(
                "The 'relabel' assignment needs a per-neuron readout ('proportion' or 'all-activity'); "
                "an n-gram spans several neurons."
            )
        self.config, self.device = config, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        presentation = PresentationConfig(time_steps=config.time_steps, max_rate_hz=config.max_rate_hz)
        inh = config.inh_strength
        if config.architecture == "diehl-cook":
            net = DiehlCookConfig(
                n_neurons=config.n_neurons,
                inh_strength=120.0 if inh is None else inh,
                reduction=config.reduction,
                one_spike=config.one_spike,
            )
            self.model: SpikingModel = build_diehl_cook(shape, net, seed=seed, presentation=presentation, device=device)
        else:
            shared = config.architecture == "conv-snn"
            crop, kernel, stride = _local_geometry(min(shape[1:]), config)
            # A shared filter sums its update over its locations, hence the 10x lower rate of conv-snn.
            net = LocalSNNConfig(
                n_filters=config.n_filters,
                inh_strength=250.0 if inh is None else inh,
                reduction=config.reduction,
                shared_weights=shared,
                crop=crop,
                kernel_size=kernel,
                stride=stride,
                nu_post=1e-3 if shared else 1e-2,
                one_spike=config.one_spike,
            )
            self.model = build_local_snn(shape, net, seed=seed, presentation=presentation, device=device)
        self.samples_seen = 0

    def _train(self, experience: Experience, on_batch) -> dict[str, float]:
        """Present the experience with STDP on; ``on_batch(epoch, labels, out)`` sees every batch's spikes."""
        x_all, y_all, n = experience.train_x, experience.train_y, len(experience.train_x)
        bs, spikes = self.config.batch_size, 0.0
        for epoch in range(self.config.epochs):
            order = torch.randperm(n, generator=self.generator)
            batches = range(0, n, bs)
            for first in progress.track(batches, f"experience {experience.index}: STDP", total=len(batches)):
                idx = order[first : first + bs]
                if self.config.architecture == "lc-snn":  # x0.99 every 250 samples (Saunders et al. 2019)
                    self.model.set_rate_scale(0.99 ** (self.samples_seen // 250))
                x, labels = x_all[idx], None if y_all is None else y_all[idx]
                replay = self.replay_batch(len(idx))
                if replay is not None:  # replayed items are presented with the new ones
                    x, labels = torch.cat([x, replay[0].view(-1, *x.shape[1:])]), torch.cat([labels, replay[1]])
                out = self.model.present(_intensities(x.to(self.device)), learning=True, record=self._records)
                on_batch(epoch, labels, out)
                spikes += out.counts.sum().item()
                self.samples_seen += len(x)
        return {
            "mean_spikes_per_sample": spikes / max(n * self.config.epochs, 1),
            "plastic_synapses": float(self.model.plastic_synapses),
        }

    _records = False

    def replay_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Items (x, y) presented with a batch of ``n`` new ones (:mod:`replaybench.agents.replay`)."""
        return None

    @torch.no_grad()
    def _present_all(self, x: torch.Tensor, record: bool = False):
        bs = self.config.eval_batch_size
        for first in range(0, len(x), bs):
            yield self.model.present(_intensities(x[first : first + bs].to(self.device)), learning=False, record=record)


class SNNFeatures(_SpikingAgent):
    """Unsupervised STDP features; ``embed`` returns spike counts ``[N, n_neurons]``."""

    kinds: ClassVar[frozenset[str]] = frozenset({"unsupervised"})

    def learn(self, experience: Experience) -> dict[str, float]:
        return self._train(experience, lambda epoch, labels, out: None)

    def state_bytes(self) -> dict[str, int]:
        """Nothing but the network (its weights and adaptive thresholds are the learner's own)."""
        return {}

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        counts = [out.counts.clone() for out in self._present_all(x)]
        return torch.cat(counts) if counts else torch.zeros(0, self.model.n_outputs, device=self.device)


class SNNClassifier(_SpikingAgent):
    """STDP features read out by label assignment; ``predict`` returns vote scores as logits."""

    kinds: ClassVar[frozenset[str]] = frozenset({"supervised"})

    def __init__(self, *, stream: Stream, config: SNNConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.n_classes = stream.n_classes
        self.rates = ClassRates(self.model.n_outputs, self.n_classes)
        self.ngrams = NGramScores(2, self.n_classes) if config.readout == "ngram" else None
        self._records = self.ngrams is not None

    def learn(self, experience: Experience) -> dict[str, float]:
        rule, last = self.config.assignment, self.config.epochs - 1
        record = self.rates if rule == "accumulate" else ClassRates(self.model.n_outputs, self.n_classes)
        spiked = torch.zeros(self.model.n_outputs, dtype=torch.bool)

        def accumulate(epoch: int, batch_labels: torch.Tensor, out) -> None:
            spiked.logical_or_(out.counts.cpu().sum(0) > 0)
            if rule != "accumulate" and epoch < last:
                return
            record.add(out.counts, batch_labels)
            if self.ngrams is not None:
                self.ngrams.add(out.spikes, batch_labels)

        stats = self._train(experience, accumulate)
        if rule == "relabel":
            # A neuron's weights change only after it spikes (potentiation at its spikes,
            # depression while its trace is non-zero), so the record of a neuron that spiked
            # here describes weights it no longer has; a silent neuron's record still holds.
            self.rates.forget(spiked)
        if record is not self.rates:
            self.rates.merge(record)
        stats["neurons_spiked"] = float(spiked.sum())
        return stats

    def state_bytes(self) -> dict[str, int]:
        """The readout's records, kept across experiences: class-rate sums (and the n-gram tables)."""
        parts = {"class_rates": tensor_bytes([self.rates.sums, self.rates.samples])}
        if self.ngrams is not None:
            parts["ngram_tables"] = tensor_bytes([self.ngrams.keys, self.ngrams.counts])
        return parts

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        assignments, proportions = assign_labels(self.rates.rates())
        scores = []
        for out in self._present_all(x, record=self.ngrams is not None):
            if self.ngrams is not None:
                scores.append(self.ngrams.scores(out.spikes))
            elif self.config.readout == "all-activity":
                scores.append(all_activity(out.counts.cpu(), assignments, self.n_classes))
            else:
                scores.append(proportion_weighting(out.counts.cpu(), assignments, proportions, self.n_classes))
        if not scores:
            return torch.zeros(0, self.n_classes, device=self.device)
        return torch.cat(scores).to(self.device)
