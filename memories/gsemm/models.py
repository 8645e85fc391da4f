"""LISEM and DSEM: batched GSEMM episodic memories as ``torch.nn.Module``.

A model holds Ξ (memories, [N, K]) and Φ (transitions, [K, K]) as buffers,
so ``.to(device)``, ``.double()`` and ``state_dict`` work. ``store`` learns
them online from pattern sequences (:mod:`replaybench.memories.gsemm.learning`);
``recall`` integrates the dynamics (:mod:`replaybench.memories.gsemm.equations`) from a
batch of cues and decodes which memories the trajectory visits.

Example:
    >>> import torch
    >>> from replaybench.memories.gsemm import DSEM, DSEMConfig, random_patterns
    >>> patterns = random_patterns(3, 64, generator=torch.Generator().manual_seed(0))
    >>> memory = DSEM(n_features=64, config=DSEMConfig(dt=0.1, integrator="euler"))
    >>> memory.store(patterns, cyclic=True).tolist()
    [0, 1, 2]
    >>> cue = patterns[1].clone(); cue[48:] = 0
    >>> memory.recall(cue, steps=2000).sequences()[0][:4]
    [1, 2, 0, 1]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from replaybench.errors import ConfigError, DivergenceError
from replaybench.memories.gsemm import equations
from replaybench.memories.gsemm.config import DSEMConfig, GSEMMConfig, LISEMConfig
from replaybench.memories.gsemm.integrators import STEPPERS, VectorField
from replaybench.memories.gsemm.learning import (
    MemoryWeights,
    cosine_overlaps,
    learn_sequence,
    learn_sequence_energy,
    transform_patterns,
)
from replaybench.params import InstanceOf, Interval, check_param

_WEIGHT_BUFFERS = ("xi", "phi", "pattern_counts", "transition_counts")


@dataclass(frozen=True)
class Recall:
    """A recalled trajectory, sampled every ``record_every`` integration steps.

    Attributes:
        times: [T] model time of each record.
        states: [T, B, N] feature state v.
        delayed: [T, B, N] delay signal v_d.
        overlaps: [T, B, K] cosine overlap of the feature output σ_f(v) with
            each memory.
        visited: [T, B] index of the best-overlapping memory, or -1 where
            the best overlap is below the model's ``overlap_threshold``.
        energy: [T, B] energy at each record, or ``None`` if not asked for.
    """

    times: Tensor
    states: Tensor
    delayed: Tensor
    overlaps: Tensor
    visited: Tensor
    energy: Tensor | None = None

    def sequences(self, min_dwell: int = 1) -> list[list[int]]:
        """The memories each trajectory visits, in order, repeats collapsed.

        Args:
            min_dwell: Records a memory must hold in a row to count as a
                visit; shorter passes (transients between memories) are
                dropped.

        Returns:
            One list of memory indices per batch row.
        """
        visited = self.visited.T.tolist()
        result = []
        for row in visited:
            sequence: list[int] = []
            run_value, run_length = -1, 0
            for index in row + [-1]:  # the sentinel flushes the last run
                if index == run_value:
                    run_length += 1
                    continue
                if run_value >= 0 and run_length >= min_dwell and (not sequence or sequence[-1] != run_value):
                    sequence.append(run_value)
                run_value, run_length = index, 1
            result.append(sequence)
        return result


def random_patterns(n_patterns: int, n_features: int, *, generator: torch.Generator) -> Tensor:
    """Random ±1 patterns [n_patterns, n_features], the paper's memories."""
    bits = torch.randint(0, 2, (n_patterns, n_features), generator=generator)
    return (2 * bits - 1).float()


def transitions_from_cycles(cycles: Sequence[Sequence[int]], n_memories: int) -> Tensor:
    """Φ [K, K] for the given cycles: ``phi[c[i+1], c[i]] = 1``, wrapping around.

    Example:
        >>> transitions_from_cycles([[0, 1, 2]], 3)
        tensor([[0., 0., 1.],
                [1., 0., 0.],
                [0., 1., 0.]])
    """
    phi = torch.zeros(n_memories, n_memories)
    for cycle in cycles:
        for position, memory in enumerate(cycle):
            if not 0 <= memory < n_memories:
                raise ConfigError(f"Cycle {list(cycle)} names memory {memory}, but there are {n_memories}.")
            phi[cycle[(position + 1) % len(cycle)], memory] = 1.0
    return phi


class GSEMM(nn.Module):
    """Shared machinery of LISEM and DSEM; use one of those.

    Args:
        n_features: N, the number of feature neurons (the pattern dimension).
        config: The model's config; its class default if omitted.
    """

    config_class: ClassVar[type[GSEMMConfig]] = GSEMMConfig

    def __init__(self, *, n_features: int, config: GSEMMConfig | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        check_param(name, "n_features", n_features, Interval(int, 1, None))
        config = self.config_class() if config is None else config
        check_param(name, "config", config, InstanceOf(self.config_class))
        self.n_features = n_features
        self.config = config
        self.register_buffer("xi", torch.zeros(n_features, 0))
        self.register_buffer("phi", torch.zeros(0, 0))
        self.register_buffer("pattern_counts", torch.zeros(0))
        self.register_buffer("transition_counts", torch.zeros(0))

    # ----------------------------------------------------------- construction
    @classmethod
    def from_patterns(
        cls,
        patterns: Tensor,
        *,
        transitions: Tensor | None = None,
        cycles: Sequence[Sequence[int]] | None = None,
        config: GSEMMConfig | None = None,
    ) -> Self:
        """Build a model with the given memories and transitions set directly.

        Args:
            patterns: [K, N] memories (transformed by ``config.pattern_transform``).
            transitions: [K, K] Φ with ``transitions[ν, μ]`` the strength of μ → ν.
            cycles: Alternatively, cycles of memory indices, e.g. ``[[0, 1, 2]]``.
            config: The model's config.

        Returns:
            The model, on the patterns' device and (floating) dtype.
        """
        patterns = torch.as_tensor(patterns)
        if patterns.ndim != 2:
            raise ConfigError(f"Expected patterns of shape [K, N], got shape {tuple(patterns.shape)}.")
        n_memories, n_features = patterns.shape
        dtype = patterns.dtype if patterns.is_floating_point() else torch.get_default_dtype()
        model = cls(n_features=n_features, config=config).to(device=patterns.device, dtype=dtype)
        if transitions is not None and cycles is not None:
            raise ConfigError("Give either 'transitions' or 'cycles', not both.")
        if cycles is not None:
            transitions = transitions_from_cycles(cycles, n_memories)
        if transitions is None:
            transitions = torch.zeros(n_memories, n_memories)
        if tuple(transitions.shape) != (n_memories, n_memories):
            raise ConfigError(
                f"Expected transitions of shape {(n_memories, n_memories)}, got {tuple(transitions.shape)}."
            )
        xi = model._prepare(patterns, "patterns", "from_patterns").T.contiguous()
        model._set_weights(
            MemoryWeights(
                xi=xi,
                phi=transitions.to(xi),
                pattern_counts=torch.ones(n_memories, dtype=xi.dtype, device=xi.device),
                transition_counts=(transitions != 0).any(dim=0).to(xi),
            )
        )
        return model

    # ----------------------------------------------------------- properties
    @property
    def n_memories(self) -> int:
        """K, the number of stored memories."""
        return self.xi.shape[1]

    @property
    def patterns(self) -> Tensor:
        """[K, N] the stored memories (rows; Ξ transposed)."""
        return self.xi.T

    @property
    def nbytes(self) -> int:
        """Bytes held by Ξ and Φ, for comparing memories at equal budgets."""
        return self.xi.numel() * self.xi.element_size() + self.phi.numel() * self.phi.element_size()

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"n_features={self.n_features}, n_memories={self.n_memories}, "
            f"alpha_s={c.alpha_s}, alpha_c={c.alpha_c}, dt={c.dt}, integrator={c.integrator!r}"
        )

    # ----------------------------------------------------------- equations
    def vector_field(self, v: Tensor, v_d: Tensor) -> tuple[Tensor, Tensor]:
        """``(dv/dt, dv_d/dt)`` at batched states [B, N]."""
        return self._field()(v, v_d)

    def energy(self, v: Tensor, v_d: Tensor) -> Tensor:
        """[B] energy at batched states [B, N] (see :mod:`replaybench.memories.gsemm.equations`)."""
        raise NotImplementedError

    def output(self, v: Tensor) -> Tensor:
        """The feature output σ_f(v), which is what overlaps are measured on."""
        raise NotImplementedError

    def _field(self) -> VectorField:
        raise NotImplementedError

    def _field_at(self, xi: Tensor, phi: Tensor) -> VectorField:
        """The vector field at explicit weights (the energy rule changes them between presentations)."""
        raise NotImplementedError

    def _hidden_code(self) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """``(v, xi, bias) -> p``, the hidden layer's output to v via the self term, for the energy rule."""
        raise ConfigError(
            f"{type(self).__name__} has a linear hidden layer: Hebbian learning on it finds the span of the "
            "patterns, not one memory per pattern, so learning_rule='energy' needs DSEM."
        )

    def overlaps(self, v: Tensor) -> Tensor:
        """[..., K] cosine overlap of σ_f(v) with each memory."""
        return cosine_overlaps(self.output(v), self.xi)

    # ----------------------------------------------------------- learning
    @torch.no_grad()
    def store(self, sequence: Tensor, *, cyclic: bool = False) -> Tensor:
        """Learn a sequence of patterns online, one presentation at a time.

        Patterns are transformed by ``config.pattern_transform`` first (by
        default rescaled to norm √N; see ``docs/gsemm.md``). Each call is one
        episode: no transition links it to the previous call.

        Args:
            sequence: [T, N] real-valued patterns in temporal order.
            cyclic: Also learn the transition from the last pattern back to
                the first.

        Returns:
            [T] the memory index each pattern was stored in.
        """
        x = self._prepare(torch.as_tensor(sequence), "sequence", "store")
        if cyclic:
            x = torch.cat([x, x[:1]])
        current = MemoryWeights(self.xi, self.phi, self.pattern_counts, self.transition_counts)
        if self.config.learning_rule == "energy":
            hidden_code = self._hidden_code()

            def field(v: Tensor, v_d: Tensor, xi: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
                return self._field_at(xi, phi)(v, v_d)

            weights, slots = learn_sequence_energy(
                current,
                x,
                field=field,
                step=STEPPERS[self.config.integrator],
                hidden_code=hidden_code,
                dt=self.config.dt,
                presentation_steps=max(1, round(self.config.presentation_time * self.config.tau_d / self.config.dt)),
                # A free slot wins where no memory's drive reaches this share of a
                # perfect match's √α_s N.
                recruit_bias=self.config.recruit_level * math.sqrt(self.config.alpha_s) * self.n_features,
            )
        else:
            weights, slots = learn_sequence(
                current,
                x,
                merge_threshold=self.config.merge_threshold,
                learning_rate=self.config.learning_rate,
            )
        self._set_weights(weights)
        return slots[: len(slots) - int(cyclic)]

    # ----------------------------------------------------------- recall
    @torch.no_grad()
    def recall(self, cue: Tensor, steps: int, *, record_every: int = 10, with_energy: bool = False) -> Recall:
        """Run the dynamics from a batch of cues and decode the visited memories.

        The feature state starts at the (transformed) cue and the delay signal
        at zero, as in the reference code.

        Args:
            cue: [B, N] or [N] partial or noisy patterns.
            steps: Integration steps of size ``config.dt``.
            record_every: Keep every this many steps (the first and last state
                are always kept).
            with_energy: Also record the energy.

        Returns:
            The :class:`Recall`, with a batch dimension even for a single cue.

        Raises:
            ConfigError: The cue has the wrong shape or is not finite, or no
                memory is stored.
            DivergenceError: The state stopped being finite.
        """
        name = type(self).__name__
        check_param(f"{name}.recall", "steps", steps, Interval(int, 1, None))
        check_param(f"{name}.recall", "record_every", record_every, Interval(int, 1, None))
        if self.n_memories == 0:
            raise ConfigError(f"{name} holds no memories; call store() or from_patterns() before recall().")
        v = self._prepare(torch.as_tensor(cue), "cue", "recall", allow_vector=True)
        v_d = torch.zeros_like(v)
        step = STEPPERS[self.config.integrator]
        field = self._field()
        dt = self.config.dt
        records: list[tuple[int, Tensor, Tensor]] = [(0, v, v_d)]
        for n in range(1, steps + 1):
            v, v_d = step(field, v, v_d, dt)
            if n % record_every == 0 or n == steps:
                self._check_finite(v, v_d, n)
                records.append((n, v, v_d))
        states = torch.stack([r[1] for r in records])
        delayed = torch.stack([r[2] for r in records])
        overlaps = self.overlaps(states)
        best, visited = overlaps.max(dim=-1)
        visited = torch.where(best >= self.config.overlap_threshold, visited, -1)
        energy = (
            self.energy(states.flatten(0, 1), delayed.flatten(0, 1)).view(states.shape[:2]) if with_energy else None
        )
        times = torch.tensor([r[0] * dt for r in records], dtype=states.dtype)
        return Recall(times=times, states=states, delayed=delayed, overlaps=overlaps, visited=visited, energy=energy)

    # ----------------------------------------------------------- helpers
    def _check_finite(self, v: Tensor, v_d: Tensor, n: int) -> None:
        if not (torch.isfinite(v).all() and torch.isfinite(v_d).all()):
            c = self.config
            raise DivergenceError(
                f"The state of {type(self).__name__} stopped being finite by step {n} of recall "
                f"(t={n * c.dt:g}); lower 'dt' (now {c.dt:g}) or the couplings "
                f"'alpha_s' ({c.alpha_s:g}) and 'alpha_c' ({c.alpha_c:g})."
            )

    def _prepare(self, x: Tensor, what: str, method: str, allow_vector: bool = False) -> Tensor:
        """Check a [B, N] (or, if allowed, [N]) input's shape and values, then transform it."""
        name = f"{type(self).__name__}.{method}"
        if allow_vector and x.ndim == 1 and x.shape[0] == self.n_features:
            x = x.unsqueeze(0)
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] == 0:
            vector = f" (or [{self.n_features}])" if allow_vector else ""
            raise ConfigError(
                f"The {what!r} argument of {name} must have shape [B, {self.n_features}] "
                f"with B >= 1{vector}. Got shape {tuple(x.shape)} instead."
            )
        x = x.to(device=self.xi.device, dtype=self.xi.dtype)
        if not torch.isfinite(x).all():
            raise ConfigError(f"The {what!r} argument of {name} must be finite. Got NaN or inf entries.")
        if self.config.pattern_transform == "unit" and (x.norm(dim=-1) == 0).any():
            raise ConfigError(
                f"The {what!r} argument of {name} has an all-zero row, which the 'unit' "
                "pattern_transform cannot rescale."
            )
        return transform_patterns(x, self.config.pattern_transform)

    def _set_weights(self, weights: MemoryWeights) -> None:
        for key in _WEIGHT_BUFFERS:
            setattr(self, key, getattr(weights, key))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        # The weights grow with every new memory: take the stored shapes.
        for key in _WEIGHT_BUFFERS:
            if prefix + key in state_dict:
                current = getattr(self, key)
                shape = state_dict[prefix + key].shape
                setattr(self, key, torch.empty(shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def _params(self) -> dict[str, float]:
        c = self.config
        return dict(alpha_s=c.alpha_s, alpha_c=c.alpha_c, gamma=c.gamma)

    def _dynamics_params(self) -> dict[str, float]:
        c = self.config
        return dict(self._params(), tau_f=c.tau_f, tau_d=c.tau_d, beta_d=c.beta_d)


class LISEM(GSEMM):
    """Linear-interaction sequential episodic memory (the paper's model A).

    ``T_f dv/dt = α_s Ξ Ξᵀ tanh(γv) + α_c Ξ Φ Ξᵀ v_d − v``,
    ``T_d dv_d/dt = β_d tanh(γv) − v_d``. Its capacity grows polynomially
    with N.
    """

    config_class = LISEMConfig

    def _field(self) -> VectorField:
        return functools.partial(equations.lisem_vector_field, xi=self.xi, phi=self.phi, **self._dynamics_params())

    def energy(self, v: Tensor, v_d: Tensor) -> Tensor:
        return equations.lisem_energy(v, v_d, self.xi, self.phi, **self._params())

    def output(self, v: Tensor) -> Tensor:
        return equations.lisem_output(v, self.config.gamma)


class DSEM(GSEMM):
    """Dense sequential episodic memory (the paper's model B).

    ``T_f dv/dt = √α_s Ξ softmax(γh) − v`` with ``h = √α_s Ξᵀv + α_c Φ Ξᵀ v_d``,
    ``T_d dv_d/dt = β_d v − v_d``. Its capacity grows exponentially with N.
    """

    config_class = DSEMConfig

    def _field(self) -> VectorField:
        return functools.partial(equations.dsem_vector_field, xi=self.xi, phi=self.phi, **self._dynamics_params())

    def _field_at(self, xi: Tensor, phi: Tensor) -> VectorField:
        return functools.partial(equations.dsem_vector_field, xi=xi, phi=phi, **self._dynamics_params())

    def _hidden_code(self) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        c = self.config

        def code(v: Tensor, xi: Tensor, bias: Tensor) -> Tensor:
            return torch.softmax(c.gamma * (math.sqrt(c.alpha_s) * (v @ xi) + bias), dim=-1)

        return code

    def energy(self, v: Tensor, v_d: Tensor) -> Tensor:
        return equations.dsem_energy(v, v_d, self.xi, self.phi, **self._params())

    def output(self, v: Tensor) -> Tensor:
        return v
