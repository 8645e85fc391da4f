"""Biological-style replay: a learner, a memory and a replay schedule, each
element of the replay review a named option.

Hayes, Krishnan, Bazhenov, Siegelmann, Sejnowski & Kanan (2021), "Replay in
deep learning: current approaches and missing biological elements" (Neural
Computation 33(11)), list replay elements of the brain that deep-learning
replay lacks. Each option below implements one (numbers are the review's
elements as listed in ``/work/shared/research/models.md``); docs/replay.md
describes them with their sources and measured accuracies.

=====================  ======================================  =====================================
option                 element                                 source
=====================  ======================================  =====================================
``sleep``              1, offline sleep consolidation          Tadros et al. 2022 (SRC)
``memory_model=gsemm`` 7, 8: replay recalled by GSEMM           Karuvally et al. 2023
                       dynamics, pattern completion
``sequence_replay``    3, time-compressed sequence replay      Hayes et al. 2021; Karuvally et al. 2023
``priority``           5, prioritised replay (loss/forgetting) Schaul et al. 2016; Toneva et al. 2019
``latent_layer``       6, latent replay into upper layers      Pellegrini et al. 2020
``cls_distill``        9, complementary learning systems       McClelland et al. 1995; Arani et al. 2022
``decay``, ``gist``    12, memory decay and transformation     Hayes et al. 2021
=====================  ======================================  =====================================

With every option off this is ER (agents/er.py) on the same reservoir.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from replaybench.agents._supervised import SupervisedAgent, TrainingConfig
from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import GSEMMReplayMemory, ScoredReservoir, scored_capacity
from replaybench.params import InstanceOf, Interval, OneOf, param
from replaybench.protocols import Experience, Stream

_UNIT = Interval(float, 0, 1)


@dataclass(frozen=True)
class ReplayConfig(TrainingConfig):
    """Options of :class:`BiologicalReplay`; every option defaults to off (plain ER)."""

    memory_bytes: int = param(1_000_000, Interval(int, 1, None))
    """Memory budget in bytes of what the memory holds (inputs or latents, labels,
    per-item metadata; for GSEMM Ξ, Φ, norms and class means)."""
    memory_model: str = param("reservoir", OneOf("reservoir", "gsemm"))
    """"reservoir": a uniform reservoir as ER's. "gsemm": per-class DSEM
    sequence memories whose recall produces the replay (Karuvally et al. 2023)."""
    latent_layer: int = param(0, Interval(int, 0, None))
    """0 stores inputs. k > 0 stores the output of the MLP's k-th hidden layer
    and replays it into the layers above; the layers below are frozen after the
    first experience so stored latents stay valid (Pellegrini et al. 2020)."""
    priority: str = param("none", OneOf("none", "loss", "forgetting"))
    """Replay sampling: uniform, in proportion to each item's last replay loss
    (Schaul et al. 2016), or to 1 + its forgetting events (Toneva et al. 2019)."""
    priority_exponent: float = param(1.0, Interval(float, 0, None))
    """α in p_i ∝ score_i^α (Schaul et al. 2016); 0 is uniform."""
    decay: float = param(0.0, Interval(float, 0, 1, closed="left"))
    """Replay weight of an item falls by (1 - decay) per experience of age."""
    gist: float = param(0.0, _UNIT)
    """After each experience, every stored item moves this fraction of the way
    to its class prototype (the stored class mean): gist extraction."""
    sleep: bool = param(False, InstanceOf(bool))
    """After each experience, a label-free Sleep Replay Consolidation phase
    (Tadros et al. 2022): the MLP runs as a spiking network driven by Poisson
    input at the mean input's rates, with local STDP-like plasticity."""
    sleep_steps: int = param(100, Interval(int, 1, None))
    """Time steps of the sleep phase."""
    sleep_increase: float = param(0.001, Interval(float, 0, None))
    """Potentiation when pre- and postsynaptic neurons both spike."""
    sleep_decrease: float = param(0.0001, Interval(float, 0, None))
    """Depression when the postsynaptic neuron spikes without presynaptic input."""
    sleep_input_rate: float = param(0.5, Interval(float, 0, 1, closed="right"))
    """Scale of the Poisson input's spike probabilities (the mean input times this)."""
    sleep_threshold: float = param(1.0, Interval(float, 0, None, closed="neither"))
    """Threshold of each layer, as a multiple of its largest input on recent data."""
    cls_distill: float = param(0.0, Interval(float, 0, None))
    """Weight of the consistency loss pulling the fast learner's logits on
    replayed items toward the slow learner's; > 0 turns on the slow learner
    (an EMA of the fast one) which then makes the predictions (CLS-ER)."""
    cls_ema: float = param(0.95, Interval(float, 0, 1, closed="neither"))
    """Per-step EMA factor of the slow learner."""
    cue_fraction: float = param(0.25, Interval(float, 0, 1, closed="left"))
    """GSEMM: fraction of each cue's entries zeroed before recall."""
    recall_steps: int = param(150, Interval(int, 1, None))
    """GSEMM: Euler steps of each recall."""
    gsemm_tau_d: float = param(20.0, Interval(float, 0, None, closed="neither"))
    """GSEMM: T_d, which sets the dwell on each memory (docs/gsemm.md)."""
    sequence_replay: bool = param(False, InstanceOf(bool))
    """GSEMM: replay each minibatch as a contiguous window of the recalled
    sequences (time-compressed: one item per memory visited, whatever its
    dwell) instead of uniform draws from them."""
    sequence_windows: int = param(8, Interval(int, 1, None))
    """Sequence replay: contiguous windows per minibatch (one window would
    replay a single class's sequence per step)."""


class BiologicalReplay(SupervisedAgent):
    """One configurable replay agent; see the module docstring for the options."""

    Config = ReplayConfig

    def __init__(self, *, stream: Stream, config: ReplayConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        c = config
        name = type(self).__name__
        if (c.latent_layer or c.sleep) and c.architecture != "mlp":
            raise ConfigError(
                f"The 'latent_layer' and 'sleep' options of {name} need architecture 'mlp'. "
                f"Got {c.architecture!r} instead."
            )
        if c.latent_layer > len(c.hidden):
            raise ConfigError(
                f"The 'latent_layer' parameter of {name} must be in the range [0, {len(c.hidden)}]. "
                f"Got {c.latent_layer} instead."
            )
        if c.memory_model == "gsemm" and (c.priority != "none" or c.decay or c.gist):
            raise ConfigError(
                f"{name}: 'priority', 'decay' and 'gist' act on the reservoir memory, not memory_model='gsemm'."
            )
        if c.sequence_replay and c.memory_model != "gsemm":
            raise ConfigError(
                f"The 'sequence_replay' option of {name} replays GSEMM recalls; set memory_model='gsemm'."
            )
        split = 1 + 2 * c.latent_layer if c.latent_layer else 0  # Flatten, then (Linear, ReLU) per hidden layer
        self.lower = self.network[:split]
        self.upper = self.network[split:]
        example = self.lower(stream.experiences[0].train_x[:1].to(self.device))[0].detach().cpu()
        if c.memory_model == "gsemm":
            dsem = DSEMConfig(dt=0.1, integrator="euler", tau_d=c.gsemm_tau_d)
            self.gsemm = GSEMMReplayMemory(
                budget_bytes=c.memory_bytes, n_features=example.numel(), config=dsem, generator=self.generator
            )
            if self.gsemm.memories_per_class(stream.n_classes) < 1:
                raise ConfigError(
                    f"A GSEMM memory of {c.memory_bytes} bytes holds no exemplar of stream {stream.name}."
                )
            self.memory = None
        else:
            metadata = 4 * ((c.priority != "none") + (c.decay > 0))
            capacity = scored_capacity(c.memory_bytes, example, metadata)
            if capacity < 1:
                raise ConfigError(f"A memory of {c.memory_bytes} bytes holds no item of stream {stream.name}.")
            self.memory = ScoredReservoir(capacity=capacity, generator=self.generator, metadata_bytes=metadata)
        self.pool_x = self.pool_y = None  # GSEMM's recalled replay items
        self.slow = copy.deepcopy(self.network).requires_grad_(False) if c.cls_distill > 0 else None
        self.input_mean = torch.zeros(stream.experiences[0].train_x[0].numel())
        self.inputs_seen = 0
        self.stats: dict[str, float] = {}
        self._input_shape = tuple(stream.experiences[0].train_x.shape[1:])

    # --- the replay step ------------------------------------------------------
    def _draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """``n`` replay items (x in the stored space, y, and reservoir indices or None)."""
        c = self.config
        if self.memory is None:
            if self.pool_x is None or len(self.pool_x) == 0:
                return None
            if c.sequence_replay:  # a few contiguous stretches of the recalled sequences, in order
                length = max(1, n // c.sequence_windows)
                starts = torch.randint(len(self.pool_x), (-(-n // length),), generator=self.generator)
                idx = ((starts[:, None] + torch.arange(length)) % len(self.pool_x)).flatten()[:n]
            else:
                idx = torch.randint(len(self.pool_x), (n,), generator=self.generator)
            return self.pool_x[idx], self.pool_y[idx], None
        if len(self.memory) == 0:
            return None
        idx = self.memory.sample_indices(n, self.replay_weights())
        return self.memory.x[idx], self.memory.y[idx], idx

    def replay_weights(self) -> torch.Tensor | None:
        """Sampling weights over the reservoir's slots, or None for uniform."""
        c, m = self.config, self.memory
        if c.priority == "none" and c.decay == 0:
            return None
        w = torch.ones(m.capacity)
        if c.priority == "loss":
            w = m.score.clamp_min(1e-6) ** c.priority_exponent
        elif c.priority == "forgetting":
            w = (1 + m.forgets) ** c.priority_exponent
        if c.decay:
            w = w * (1 - c.decay) ** m.age
        return w

    def extra_loss(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | float:
        if self.slow is not None:
            self._ema()  # the previous step's update reaches the slow learner (the loop has no after-step hook)
        draw = self._draw(len(x))
        if draw is None:
            return 0.0
        rx, ry, idx = draw
        rx, ry = rx.to(self.device), ry.to(self.device)
        replay_logits = self.upper(rx.view(len(rx), *self._stored_shape()))
        per_item = F.cross_entropy(replay_logits, ry, reduction="none")
        loss = per_item.mean()
        if idx is not None:
            self._update_scores(idx, per_item.detach().cpu(), (replay_logits.argmax(1) == ry).cpu())
        if self.slow is not None:
            with torch.no_grad():
                target = self.slow[len(self.lower) :](rx.view(len(rx), *self._stored_shape()))
            loss = loss + self.config.cls_distill * F.mse_loss(replay_logits, target)
        self.stats["replay_samples"] = self.stats.get("replay_samples", 0.0) + len(rx)
        return loss

    def _update_scores(self, idx: torch.Tensor, losses: torch.Tensor, correct: torch.Tensor) -> None:
        m = self.memory
        m.score[idx] = losses
        m.forgets[idx] += (m.last_correct[idx] & ~correct).float()
        m.last_correct[idx] = correct

    def _stored_shape(self) -> tuple[int, ...]:
        if self.config.latent_layer:
            return (self.config.hidden[self.config.latent_layer - 1],)
        return self._input_shape

    # --- experience boundaries ---------------------------------------------------
    def before_experience(self, experience: Experience) -> None:
        self.stats = {"replay_samples": 0.0}

    def after_experience(self, experience: Experience) -> dict[str, float]:
        c = self.config
        x, y = experience.train_x, experience.train_y
        if c.latent_layer and experience.index == 0:
            self.lower.requires_grad_(False)  # Pellegrini et al. 2020: frozen lower layers keep latents valid
        n_new = len(x)
        flat = x.flatten(1).float().mean(0)
        self.input_mean = (self.input_mean * self.inputs_seen + flat * n_new) / (self.inputs_seen + n_new)
        self.inputs_seen += n_new
        if c.sleep:
            self.stats.update(sleep_consolidation(self.network, self.input_mean, x, c, self.generator))
        stored = self._latents(x) if c.latent_layer else x
        if self.memory is not None:
            self.memory.age[: len(self.memory)] += 1
            self.memory.add(stored, y)
            if c.gist:
                self._extract_gist()
            self.stats["memory_bytes"] = float(self.memory.nbytes)
        else:
            self.gsemm.add(stored.flatten(1), y)
            pool = self.gsemm.recall_pool(cue_fraction=c.cue_fraction, steps=c.recall_steps)
            self.pool_x, self.pool_y = pool.x, pool.y
            self.stats.update(
                memory_bytes=float(self.gsemm.nbytes),
                gsemm_memories=float(len(self.gsemm)),
                gsemm_completed=pool.completed,
                gsemm_items_per_cue=pool.items_per_cue,
                gsemm_pool=float(len(pool.x)),
            )
        if self.slow is not None:
            self._ema()
        return dict(self.stats)

    @torch.no_grad()
    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        self.lower.eval()
        return torch.cat([self.lower(x[i : i + 1024].to(self.device)).cpu() for i in range(0, len(x), 1024)])

    def _extract_gist(self) -> None:
        """Move every stored item ``gist`` of the way to its class's stored mean."""
        m, n = self.memory, len(self.memory)
        x, y = m.x[:n], m.y[:n]
        for label in torch.unique(y):
            rows = y == label
            x[rows] += self.config.gist * (x[rows].float().mean(0) - x[rows])

    # --- the slow learner ----------------------------------------------------------
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if self.slow is None:
            return super().predict(x, task_id)
        self.slow.eval()
        with torch.no_grad():
            return self.slow(x.to(self.device))

    def _ema(self) -> None:
        """Slow ← ema·slow + (1 − ema)·fast (the stable model of CLS-ER, Arani et al. 2022)."""
        with torch.no_grad():
            for slow, fast in zip(self.slow.parameters(), self.network.parameters()):
                slow.mul_(self.config.cls_ema).add_(fast, alpha=1 - self.config.cls_ema)


@torch.no_grad()
def sleep_consolidation(
    network: nn.Sequential,
    input_mean: torch.Tensor,
    recent_x: torch.Tensor,
    config: ReplayConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Sleep Replay Consolidation (Tadros et al. 2022, Nat. Commun. 13:7742), in outline.

    The MLP's linear layers run as a network of integrate-and-fire neurons
    without biases. Each layer's threshold is ``sleep_threshold`` times the
    largest input that layer received on ``recent_x`` (data-based scaling).
    Input spikes are Bernoulli draws with probability ``sleep_input_rate``
    times the mean input. At each step a postsynaptic spike potentiates its
    synapses from presynaptic neurons that spiked (``sleep_increase``) and
    depresses those from neurons that did not (``sleep_decrease``). No label is
    used. The weights are modified in place.

    Returns:
        ``sleep_spikes`` (mean spikes per neuron per step) and
        ``sleep_weight_change`` (relative L2 change of the weights).
    """
    layers = [m for m in network if isinstance(m, nn.Linear)]
    before = torch.cat([l.weight.flatten() for l in layers]).clone()
    thresholds = []
    h = recent_x[:512].flatten(1).float().to(layers[0].weight.device)
    for layer in layers:
        pre = h @ layer.weight.T
        thresholds.append(config.sleep_threshold * pre.max().clamp_min(1e-6))
        h = pre.clamp_min(0)
    potentials = [torch.zeros(l.out_features, device=l.weight.device) for l in layers]
    rates = (input_mean * config.sleep_input_rate).clamp(0, 1).to(layers[0].weight.device)
    spikes_total, neurons = 0.0, sum(l.out_features for l in layers)
    for _ in range(config.sleep_steps):
        spikes = (torch.rand(rates.shape, generator=generator).to(rates.device) < rates).float()
        for layer, potential, threshold in zip(layers, potentials, thresholds):
            potential += layer.weight @ spikes
            post = (potential >= threshold).float()
            potential *= 1 - post  # reset the neurons that fired
            fired = post.bool()
            if fired.any():
                layer.weight[fired] += config.sleep_increase * spikes - config.sleep_decrease * (1 - spikes)
            spikes_total += float(post.sum())
            spikes = post
    after = torch.cat([l.weight.flatten() for l in layers])
    return {
        "sleep_spikes": spikes_total / (neurons * config.sleep_steps),
        "sleep_weight_change": float((after - before).norm() / before.norm()),
    }
