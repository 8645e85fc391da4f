"""Biological-style replay: a learner, a source and a schedule, each chosen independently.

    replaybench run --agent replay -o learner=efp -o source=gsemm -o schedule=interleaved

=============  ===============================================================================
choice         values
=============  ===============================================================================
``learner``    ``backprop`` (MLP or CNN), ``sigprop``, ``efp``, ``stdp`` (Diehl & Cook or LC-SNN)
``source``     ``none``, ``buffer`` (reservoir or class-balanced), ``gsemm`` (recall from
               partial cues), ``generative`` (new items: GSEMM mixture states or a per-class
               PPCA model), ``wave`` (the latest experience in a traveling-wave lattice)
``schedule``   ``interleaved`` (a replay minibatch with every new one), ``sleep`` (offline,
               between experiences), ``sequence`` (ordered, time-compressed stretches)
=============  ===============================================================================

The replay review's elements (Hayes et al. 2021, Neural Computation 33(11):2908-2950,
doi:10.1162/neco_a_01433; numbered as in docs/replay.md) are options:

=======================  =====================================  ================================
option                   element                                source
=======================  =====================================  ================================
``schedule=sleep``,      1, offline sleep consolidation         Tadros et al. 2022 (SRC)
``src``
``schedule=sequence``    3, time-compressed sequence replay     Hayes et al. 2021
``priority``             5, prioritised replay                  Schaul et al. 2016; Toneva 2019
``latent_layer``         6, latent replay into upper layers     Pellegrini et al. 2020
``source=generative``    7, generative replay                   Shin et al. 2017; Karuvally 2023
``source=gsemm``         8, pattern completion from cues        Karuvally et al. 2023
``cls_distill``          9, complementary learning systems      McClelland 1995; Arani et al. 2022
``decay``, ``gist``      12, memory decay and transformation    Hayes et al. 2021
=======================  =====================================  ================================

**Memory is counted whole.** ``memory_bytes`` bounds everything the agent
keeps across experiences besides its learner's weights and optimiser: the
source's items or model, a slow learner, SRC's running statistics, a
spiking readout's records. What is left after the fixed parts goes to the
source; a budget that holds no item, or not the fixed parts, is refused.
:meth:`ReplayAgent.state_bytes` reports the breakdown.

The learner's own options (``lr``, ``hidden``, ``free_steps``,
``n_neurons``, …) are options of this agent too; left unset, each takes its
learner's default, and setting one that the chosen learner lacks is refused.
With ``learner=backprop, source=buffer, schedule=interleaved`` and every
other option off, this is ER (agents/er.py) on the same reservoir.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from replaybench.agents.replay.learners import ANN_LEARNERS, LEARNERS
from replaybench.agents.replay.sleep import SleepStatistics, src_phase, stdp_sleep
from replaybench.agents.replay.sources import ORDERED_SOURCES, SOURCES, BalancedSource, BufferSource, build_source
from replaybench.errors import ConfigError
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, build_config, param
from replaybench.protocols import CountsState, Experience, KeepsEpochLosses, Stream

_UNIT = Interval(float, 0, 1)


@dataclass(frozen=True)
class ReplayOptions(Config):
    """The replay agent's own options (the learner's come from its Config)."""

    preset_scope: ClassVar[tuple[str, ...]] = ("learner", "source", "schedule")
    """A board preset of a replay agent was tuned for these choices; changing one drops the preset."""

    learner: str = param("backprop", OneOf(*LEARNERS))
    """What replayed items train: "backprop", "sigprop", "efp" or "stdp"."""
    source: str = param("buffer", OneOf(*SOURCES))
    """Where replayed items come from; "none" replays nothing (the no-replay control)."""
    schedule: str = param("interleaved", OneOf("interleaved", "sleep", "sequence"))
    """When they are replayed: with every minibatch, offline after each experience, or as ordered stretches."""
    memory_bytes: int = param(1_000_000, Interval(int, 1, None))
    """Budget for everything kept across experiences besides the learner's weights (see the module docstring)."""
    buffer: str = param("reservoir", OneOf("reservoir", "balanced"))
    """source=buffer: a uniform reservoir (ER) or equal shares per class."""
    generator: str = param("gsemm-mixture", OneOf("gsemm-mixture", "ppca"))
    """source=generative: mixtures from GSEMM's dynamics, or a per-class probabilistic PCA model."""
    wave_direction: str = param("both", OneOf("forward", "reverse", "both"))
    """source=wave: read stretches out in order, reversed (reverse replay), or either at random."""
    bias: bool = param(True, InstanceOf(bool))
    """backprop MLP: biases in its layers. SRC (Tadros et al. 2022) needs none: sleep cannot scale a
    bias, and a stale one brings forgetting back (without them SRC lifts split-mnist5k from 0.19 to 0.51;
    with them to 0.21, docs/replay.md)."""
    latent_layer: int = param(0, Interval(int, 0, None))
    """backprop MLP: 0 stores inputs; k > 0 stores hidden layer k's outputs and replays them into the layers above."""
    priority: str = param("none", OneOf("none", "loss", "forgetting"))
    """source=buffer: uniform, by last replay loss (Schaul 2016), or by 1 + forgetting events (Toneva 2019)."""
    priority_exponent: float = param(1.0, Interval(float, 0, None))
    """α in p_i ∝ score_i^α; 0 is uniform."""
    decay: float = param(0.0, Interval(float, 0, 1, closed="left"))
    """source=buffer: an item's replay weight falls by (1 - decay) per experience of age."""
    gist: float = param(0.0, _UNIT)
    """source=buffer: after each experience, stored items move this fraction of the way to their class mean."""
    cls_distill: float = param(0.0, Interval(float, 0, None))
    """backprop: > 0 adds a slow learner (an EMA of the weights) that predicts, and this weight on the
    consistency loss pulling the fast learner's logits on replayed items toward it (CLS-ER)."""
    cls_ema: float = param(0.95, Interval(float, 0, 1, closed="neither"))
    """Per-step EMA factor of the slow learner."""
    cue_fraction: float = param(0.25, Interval(float, 0, 1, closed="left"))
    """GSEMM sources: fraction of each cue's entries zeroed before recall."""
    recall_steps: int = param(150, Interval(int, 1, None))
    """GSEMM sources: Euler steps of each recall."""
    gsemm_tau_d: float = param(20.0, Interval(float, 0, None, closed="neither"))
    """GSEMM sources: T_d, which sets the dwell on each memory (docs/gsemm.md)."""
    sequence_windows: int = param(8, Interval(int, 1, None))
    """schedule=sequence: contiguous stretches per replay minibatch."""
    src: bool | None = param(None, Optional(InstanceOf(bool)))
    """Run Sleep Replay Consolidation (Tadros et al. 2022) in the spiking simulator after each
    experience; None: on with schedule=sleep for ANN learners. stdp learners sleep natively instead."""
    src_constants: str = param("mnist", OneOf("mnist", "fashion-mnist"))
    """SRC's tuned constants (thresholds, scale, rates) from the original code's MNIST or Fashion-MNIST runs."""
    src_steps_scale: float = param(1.0, Interval(float, 0, None, closed="neither"))
    """Multiplies SRC's sleep length (15000 + 5000·k steps after experience k)."""
    sleep_presentations: int = param(200, Interval(int, 1, None))
    """stdp learners with schedule=sleep and no source: noisy mean-input presentations per sleep."""


def _learner_fields() -> list[tuple[str, Any, Any]]:
    """Every learner option not already an option of the replay agent, as an unset (None) field."""
    own = {f.name for f in dataclasses.fields(ReplayOptions)}
    seen: dict[str, tuple[str, Any, Any]] = {}
    for _, config_cls in LEARNERS.values():
        for f in dataclasses.fields(config_cls):
            if f.name not in own and f.name not in seen:
                seen[f.name] = (f.name, Any, dataclasses.field(default=None))
    return list(seen.values())


def _check_learner_options(self: Any) -> None:
    ReplayOptions.__post_init__(self)
    learner_options(self)  # refuse, when the spec is built, an option the chosen learner lacks


ReplayConfig = dataclasses.make_dataclass(
    "ReplayConfig",
    _learner_fields(),
    bases=(ReplayOptions,),
    frozen=True,
    namespace={
        "__doc__": "The replay agent's options, and every learner's (None: the learner's default).",
        "__post_init__": _check_learner_options,
    },
)


def learner_options(config: Any) -> dict[str, Any]:
    """The learner options that were set, refusing those the chosen learner does not have."""
    own = {f.name for f in dataclasses.fields(ReplayOptions)}
    _, learner_config_cls = LEARNERS[config.learner]
    accepted = {f.name for f in dataclasses.fields(learner_config_cls)}
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in own}
    given = {k: v for k, v in given.items() if v is not None}
    wrong = sorted(set(given) - accepted)
    if wrong:
        owners = {
            k: [n for n, (_, cc) in LEARNERS.items() if k in {f.name for f in dataclasses.fields(cc)}] for k in wrong
        }
        detail = "; ".join(f"{k!r} is an option of learner {'/'.join(v)}" for k, v in owners.items())
        raise ConfigError(f"agent 'replay' with learner={config.learner!r}: {detail}.")
    return given


class ReplayAgent:
    """A learner that replays from a source on a schedule; see the module docstring."""

    Config: ClassVar[type] = ReplayConfig
    kinds: ClassVar[frozenset[str]] = frozenset({"supervised"})

    def __init__(self, *, stream: Stream, config: Any, seed: int, device: str = "cpu") -> None:
        c = self.config = config
        self._check_combination(c, stream)
        learner_cls, learner_config_cls = LEARNERS[c.learner]
        self.learner_config = build_config(
            learner_config_cls, learner_options(c), owner=f"agent 'replay' (learner {c.learner})"
        )
        extra = {}
        if c.learner == "backprop":
            extra = {
                "latent_layer": c.latent_layer,
                "cls_distill": c.cls_distill,
                "cls_ema": c.cls_ema,
                "bias": c.bias,
            }
        self.learner = learner_cls(stream=stream, config=self.learner_config, seed=seed, device=device, **extra)
        self.learner.replayer = self
        self.generator = self.learner.generator  # one stream of randomness, as ER
        self.last_epoch_losses: list[float] = []
        """The waking pass's mean loss per epoch (:class:`~replaybench.protocols.KeepsEpochLosses`); empty for STDP."""
        relu = getattr(self.learner_config, "activation", "relu") == "relu"
        auto_src = c.schedule == "sleep" and relu  # SRC's integrate-and-fire units stand for ReLUs
        self.use_src = c.learner in ANN_LEARNERS and (c.src if c.src is not None else auto_src)
        if c.schedule == "sleep" and c.source == "none" and not self.use_src and c.learner != "stdp":
            raise ConfigError(
                f"agent 'replay' (learner={c.learner}, source=none, schedule=sleep): nothing to do in sleep "
                "without a source or SRC (which needs ReLU layers)"
            )
        first = stream.experiences[0].train_x
        self.sleep_stats = None
        if self.use_src:
            self.sleep_stats = SleepStatistics(first[0].numel(), len(self.learner.linear_layers()))
        elif c.learner == "stdp" and c.schedule == "sleep" and c.source == "none":
            self.sleep_stats = SleepStatistics(first[0].numel(), 0)  # the mean input drives its sleep
        if self.use_src:
            self._check_src_depth()
        fixed = self._fixed_bytes()
        if sum(fixed.values()) > c.memory_bytes:
            parts = ", ".join(f"{k} {v:,} B" for k, v in fixed.items())
            raise ConfigError(f"memory_bytes={c.memory_bytes:,} cannot hold the replay agent's fixed parts ({parts})")
        example = self.learner.encode(first[:1].to(self.learner.device))[0].cpu()
        try:
            self.source = build_source(
                c,
                budget_bytes=c.memory_bytes - sum(fixed.values()),
                example=example,
                n_classes=stream.n_classes,
                generator=self.generator,
            )
        except ConfigError as exc:
            kept = f" after {', '.join(f'{k} ({v:,} B)' for k, v in fixed.items())}" if fixed else ""
            raise ConfigError(f"memory_bytes={c.memory_bytes:,}{kept}: {exc}") from None
        self.seen_classes: set[int] = set()
        self.awake = True
        self.stats: dict[str, float] = {}

    # --- options ---------------------------------------------------------------------
    @staticmethod
    def _check_combination(c: Any, stream: Stream) -> None:
        """Refuse, in one line, a combination that cannot work."""

        def refuse(why: str) -> None:
            raise ConfigError(f"agent 'replay' (learner={c.learner}, source={c.source}, schedule={c.schedule}): {why}")

        buffer_only = [k for k in ("priority", "decay", "gist") if getattr(c, k) not in ("none", 0, 0.0)]
        if buffer_only and (c.source != "buffer" or c.buffer != "reservoir"):
            refuse(f"{', '.join(buffer_only)} act on the reservoir buffer; set source=buffer, buffer=reservoir")
        if (c.latent_layer or c.cls_distill or not c.bias) and c.learner != "backprop":
            refuse("latent_layer, cls_distill and bias are options of learner=backprop")
        if c.schedule == "sequence" and c.source not in ORDERED_SOURCES:
            refuse(f"the sequence schedule needs a source that keeps an order ({', '.join(ORDERED_SOURCES)})")
        if c.src and c.learner not in ANN_LEARNERS:
            refuse("src converts an ANN to integrate-and-fire layers; stdp learners sleep natively (schedule=sleep)")
        if c.latent_layer and (c.src or c.schedule == "sleep"):
            refuse("latent replay feeds stored latents to the upper layers only; it does not run offline or with src")
        if getattr(c, "local_replay_size", None):
            refuse("sigprop's own layer-local replay is the agent sigprop-local-replay; here replay comes from source")
        if c.learner != "backprop" and c.source != "none" and stream.scenario == "task-il":
            refuse("replayed items of other tasks cannot join a multi-head minibatch; use learner=backprop")

    def _check_src_depth(self) -> None:
        from replaybench.spiking.src import SRC_CONSTANTS

        betas = SRC_CONSTANTS[self.config.src_constants].betas
        layers = len(self.learner.linear_layers())
        if layers != len(betas):
            raise ConfigError(
                f"agent 'replay': SRC's {self.config.src_constants} thresholds are tuned for {len(betas)} weight "
                f"layers (hidden of {len(betas) - 1} widths); the learner has {layers}"
            )
        activation = getattr(self.learner_config, "activation", "relu")
        if activation != "relu":
            raise ConfigError(f"agent 'replay': SRC's integrate-and-fire layers stand for ReLU units; got {activation}")

    def _fixed_bytes(self) -> dict[str, int]:
        """What is kept whatever the source holds (counted against ``memory_bytes``)."""
        fixed = dict(self.learner.extra_state_bytes())
        if self.sleep_stats is not None:
            fixed["sleep_statistics"] = self.sleep_stats.nbytes
        if isinstance(self.learner, CountsState):  # e.g. a spiking readout's records
            fixed.update(self.learner.state_bytes())
        return {k: int(v) for k, v in fixed.items() if v}

    # --- the replay hooks the learner calls --------------------------------------------
    def draw(self, n: int) -> tuple[Tensor, Tensor] | None:
        if not self.awake or self.source is None or len(self.source) == 0 or self.config.schedule == "sleep":
            return None
        if self.config.schedule == "sequence":
            x, y = self.source.sequence(n)
        else:
            x, y = self.source.sample(n)
        self.stats["replay_samples"] = self.stats.get("replay_samples", 0.0) + len(x)
        return x, y

    def feedback(self, losses: Tensor, correct: Tensor) -> None:
        if isinstance(self.source, BufferSource):
            self.source.feedback(losses, correct)

    # --- the agent ------------------------------------------------------------------------
    def learn(self, experience: Experience) -> dict[str, float]:
        """The learner's pass over the experience (replaying as scheduled), then :meth:`consolidate`."""
        self.stats = {}
        stats = dict(self.learner.learn(experience) or {})
        # copied before a sleep's rehearsal, which runs the learner's loop again
        self.last_epoch_losses = (
            list(self.learner.last_epoch_losses) if isinstance(self.learner, KeepsEpochLosses) else []
        )
        stats.update(self.consolidate(experience))
        return stats

    def consolidate(self, experience: Experience) -> dict[str, float]:
        """After the waking pass: fold the experience into the source and statistics, then sleep if scheduled."""
        stats: dict[str, float] = {}
        self.seen_classes.update(int(k) for k in experience.classes)
        x, y = experience.train_x, experience.train_y
        if self.sleep_stats is not None:
            self.sleep_stats.update(x, self.learner.linear_layers() if self.use_src else [])
        if self.source is not None:
            self.source.add(self.learner.encode(x), y)
            stats.update(self._source_stats())
        if self.config.schedule == "sleep":
            stats.update(self._sleep(experience))
        elif self.use_src:
            stats.update(src_phase(self.learner, self.sleep_stats, experience.index, self.config))
        stats["replay_samples"] = self.stats.get("replay_samples", 0.0) + stats.get("replay_samples", 0.0)
        return stats

    def _sleep(self, experience: Experience) -> dict[str, float]:
        """Offline: rehearse the source's items with the learner's own rule, then SRC (ANN) or STDP sleep."""
        stats: dict[str, float] = {}
        if self.source is not None and len(self.source) > 0:
            if isinstance(self.source, (BufferSource, BalancedSource)):
                rx, ry = self.source.items()  # every stored item once
            else:
                rx, ry = self.source.sample(len(self.source))
            if self.config.learner == "stdp":
                stats.update(stdp_sleep(self.learner, rx, ry, self.config))
            else:
                dream = Experience(
                    index=experience.index,
                    kind="supervised",
                    train_x=rx.view(len(rx), *self.learner.stored_shape),
                    train_y=ry,
                    classes=tuple(sorted(self.seen_classes)),
                )
                self.awake = False  # the dream is the replay; nothing is drawn on top of it
                try:
                    rehearsal = self.learner.learn(dream)
                finally:
                    self.awake = True
                stats["sleep_train_loss"] = float(rehearsal.get("train_loss", float("nan")))
            stats["replay_samples"] = stats.get("replay_samples", 0.0) + len(rx) * self._epochs()
        elif self.config.learner == "stdp":
            stats.update(stdp_sleep(self.learner, None, None, self.config, self.sleep_stats))
        if self.use_src:
            stats.update(src_phase(self.learner, self.sleep_stats, experience.index, self.config))
        return stats

    def _epochs(self) -> int:
        return int(getattr(self.learner_config, "epochs", 1))

    def _source_stats(self) -> dict[str, float]:
        extra = getattr(self.source, "stats", None)
        out = {"memory_bytes": float(self.source.nbytes)}
        if isinstance(extra, dict):
            out.update({k: float(v) for k, v in extra.items()})
        return out

    def predict(self, x: Tensor, task_id: int | None = None) -> Tensor:
        return self.learner.predict(x, task_id)

    def state_bytes(self) -> dict[str, int]:
        """Bytes kept across experiences besides the learner's weights, by part."""
        parts = self._fixed_bytes()
        if self.source is not None:
            parts[f"source_{self.config.source}"] = int(self.source.nbytes)
        return parts
