"""Generative replay sources: items that were never stored, drawn from a model of each class.

Hayes, Krishnan, Bazhenov, Siegelmann, Sejnowski & Kanan (2021, "Replay in
deep learning: current approaches and missing biological elements", Neural
Computation 33(11)) list generative replay and novel recombinations among the
elements of the brain's replay that deep learning mostly lacks (element 7 in
docs/replay.md's list); generative replay in deep learning goes
back to Shin, Lee, Kim & Kim (2017, "Continual learning with deep generative
replay"). Two generators, both built for a byte budget that counts their
parameters:

- :class:`GSEMMMixtureSource`: per-class GSEMM (DSEM) memories, as in
  :class:`replaybench.memories.gsemm_replay.GSEMMReplayMemory`, but what is
  replayed are the states of the dynamics that are *mixtures* of stored
  memories: recall starts from cues that blend two or more memories of a
  class, and the states taken while the dynamics leave the blend and while
  they travel between successive memories of the sequence are decoded as
  mixtures, never snapped to a stored exemplar.
- :class:`PPCASource`: per-class probabilistic PCA (Tipping & Bishop 1999),
  a Gaussian with k principal directions and isotropic noise, k fitted to
  the budget.

Both offer ``sample`` (items drawn independently) and ``sequence`` (ordered
stretches, for the replay agent's "sequence" schedule), and ``stats`` for the
agent to report. Unlike the buffers, their samples are not stored items, so
:func:`replaybench.checks.check_memory`'s ``sample`` check ("sampled items
were added") does not apply to them; the other checks do.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import GSEMMReplayMemory, memories_per_class, window_indices
from replaybench.params import Interval, check_param

_FLOAT_BYTES = 4
_INT_BYTES = 8  # int64 labels and counts, as in memories.reservoir.items_for_bytes
_POSITIVE_INT = Interval(int, 1, None)


def mixture_weights(model: Any, states: Tensor) -> Tensor:
    """[M, K] the weights of each DSEM state [M, N] over the model's memories, summing to 1.

    DSEM's feature flow ``T_f dv/dt = √α_s Ξ softmax(γh) − v`` moves ``v``
    toward a convex combination of the memories (with α_s = 1), so a state
    reached from a cue in the memories' span stays in it; its least-squares
    coordinates in Ξ's columns are that combination. Negative coordinates
    (numerical error, or a cue outside the span) are clipped before the
    weights are normalised.
    """
    coefficients = torch.linalg.lstsq(model.xi.double(), states.double().T).solution.T
    coefficients = coefficients.clamp_min(0)
    return (coefficients / coefficients.sum(1, keepdim=True).clamp_min(1e-12)).float()


class GSEMMMixtureSource:
    """Generative replay from GSEMM's dynamics: mixtures of a class's stored memories.

    Storage is :class:`GSEMMReplayMemory`'s: one DSEM per class whose
    exemplars (centred by the class mean) are one cyclic sequence in arrival
    order (Karuvally, Sejnowski & Siegelmann 2023). After every :meth:`add`,
    ``cues_per_class`` recalls per class start from cues that blend ``blend``
    distinct memories of the class with random (Dirichlet(1)) weights, and
    run ``recall_steps`` steps. DSEM's softmax pulls the blend toward one
    memory, dwells, then moves on along the sequence; every ``record_every``
    steps the state's weights over the memories are read off
    (:func:`mixture_weights`), and a state whose largest weight is below
    ``max_share`` is a mixture: it is decoded as the same weights over the
    stored exemplars at their own scale (plus the class mean), not snapped to
    the nearest one. The pool holds these states in time order, per
    trajectory; :meth:`sample` draws from it and :meth:`sequence` reads
    stretches of it in order.

    A class needs at least two memories to mix, so the budget must hold two
    per class (:meth:`capacity_for`); a class whose exemplars merged into one
    memory contributes nothing. ``nbytes`` counts the GSEMM weights, norms,
    means and labels; the pool is the dynamics' output, recomputed after
    every experience, and is not counted (a generator's parameters are what
    it keeps). ``len`` is the number of stored memories, what the bytes pay
    for (as :func:`replaybench.checks.check_memory` expects); the pool's
    size is in :attr:`stats`. If no class holds two memories (all of a
    class's exemplars merged) the pool is empty and :meth:`sample` raises
    ``ValueError``.

    Args:
        budget_bytes: Bytes for the GSEMM weights of every class.
        n_features: N, the width of an item row.
        n_classes: Classes of the stream; each must get two memories.
        generator: Randomness of the exemplar choice, the blends and sampling.
        config: DSEM parameters; default Euler at dt = 0.1 with T_d = 20.
        recall_steps: Integration steps of each recall.
        cues_per_class: Blended cues recalled per class.
        blend: Memories blended in each cue (at most the class's memories).
        max_share: A state is a mixture when no memory has this much of its weight.
        record_every: Integration steps between the states examined.
        windows: Contiguous stretches per :meth:`sequence` draw.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        n_features: int,
        n_classes: int,
        generator: torch.Generator,
        config: DSEMConfig | None = None,
        recall_steps: int = 150,
        cues_per_class: int = 32,
        blend: int = 2,
        max_share: float = 0.7,
        record_every: int = 5,
        windows: int = 8,
    ) -> None:
        name = type(self).__name__
        for key, value in (
            ("budget_bytes", budget_bytes),
            ("n_features", n_features),
            ("n_classes", n_classes),
            ("recall_steps", recall_steps),
            ("cues_per_class", cues_per_class),
            ("record_every", record_every),
            ("windows", windows),
        ):
            check_param(name, key, value, _POSITIVE_INT)
        check_param(name, "blend", blend, Interval(int, 2, None))
        check_param(name, "max_share", max_share, Interval(float, 0, 1, closed="neither"))
        if self.capacity_for(budget_bytes, n_features, n_classes) < 2:
            need = 4 * (3 * n_features + 6) + 8  # two memories: Ξ 2N, Φ 4, norms 2, mean N; the label
            raise ConfigError(
                f"A GSEMM mixture source of {budget_bytes:,} bytes cannot hold two {n_features}-feature memories "
                f"for each of {n_classes} classes (that needs {need * n_classes:,} bytes)."
            )
        self.budget_bytes, self.n_features, self.n_classes = budget_bytes, n_features, n_classes
        self.generator = generator
        self.recall_steps, self.cues_per_class, self.blend = recall_steps, cues_per_class, blend
        self.max_share, self.record_every, self.windows = max_share, record_every, windows
        config = config if config is not None else DSEMConfig(dt=0.1, integrator="euler", tau_d=20.0)
        self.memory = GSEMMReplayMemory(
            budget_bytes=budget_bytes, n_features=n_features, config=config, generator=generator
        )
        self.pool_x = torch.empty(0, n_features)
        self.pool_y = torch.empty(0, dtype=torch.long)
        self.pool_share = torch.empty(0)

    @staticmethod
    def capacity_for(budget_bytes: int, n_features: int, n_classes: int) -> int:
        """Memories per class that ``budget_bytes`` holds for ``n_classes`` classes; 0 when fewer than 2 fit."""
        k = memories_per_class(budget_bytes, n_features, n_classes)
        return k if k >= 2 else 0

    # -------------------------------------------------------------- storing and dreaming
    def add(self, x: Tensor, y: Tensor) -> None:
        """Store an experience's items (each new class one cyclic sequence), then dream the pool anew."""
        self.memory.add(x, y)
        xs, ys, shares = [], [], []
        for c, stored in self.memory.classes.items():
            states, share = self._dream(stored.model)
            keep = share < self.max_share
            if keep.any():
                xs.append(self._decode(c, states[keep]))
                ys.append(torch.full((int(keep.sum()),), c, dtype=torch.long))
                shares.append(share[keep])
        if xs:
            self.pool_x, self.pool_y, self.pool_share = torch.cat(xs), torch.cat(ys), torch.cat(shares)
        else:
            self.pool_x, self.pool_y, self.pool_share = self.pool_x[:0], self.pool_y[:0], self.pool_share[:0]

    @torch.no_grad()
    def _dream(self, model: Any) -> tuple[Tensor, Tensor]:
        """Recall from blended cues.

        Returns every examined state [M, N] (trajectory by trajectory, in time
        order) and its largest weight over the memories [M].
        """
        k = model.n_memories
        if k < 2:
            return torch.empty(0, self.n_features), torch.empty(0)
        m, b = min(self.blend, k), self.cues_per_class
        chosen = torch.rand(b, k, generator=self.generator).argsort(1)[:, :m]  # m distinct memories per cue
        weights = -torch.rand(b, m, generator=self.generator).clamp_min(1e-12).log()  # Dirichlet(1, ..., 1)
        weights = weights / weights.sum(1, keepdim=True)
        cues = (weights[:, :, None] * model.patterns[chosen]).sum(1)
        recall = model.recall(cues, steps=self.recall_steps, record_every=self.record_every)
        states = recall.states[1:].transpose(0, 1).reshape(-1, self.n_features)  # the cue itself is not a dream
        share = mixture_weights(model, states).max(1).values
        return states, share

    def _decode(self, c: int, states: Tensor) -> Tensor:
        """The states' weights over the memories, applied to the stored exemplars at their own scale (plus the mean)."""
        stored = self.memory.classes[c]
        patterns = stored.model.patterns
        exemplars = patterns / patterns.norm(dim=1, keepdim=True).clamp_min(1e-12) * stored.norms[:, None]
        return mixture_weights(stored.model, states) @ exemplars + stored.mean

    # -------------------------------------------------------------- replay
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` mixture items ``(x [n, N], y [n])``, uniformly with replacement from the pool."""
        self._check_pool()
        idx = torch.randint(len(self.pool_x), (n,), generator=generator or self.generator)
        return self.pool_x[idx], self.pool_y[idx]

    def sequence(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` mixture items as about ``windows`` contiguous stretches of the dreamed trajectories, in time order."""
        self._check_pool()
        idx = window_indices(len(self.pool_x), n, self.windows, generator or self.generator)
        return self.pool_x[idx], self.pool_y[idx]

    @property
    def stats(self) -> dict[str, float]:
        """Memories held, mixtures dreamed, and the mean largest weight of a mixture."""
        share = float(self.pool_share.mean()) if len(self.pool_share) else float("nan")
        return {
            "generative_memories": float(len(self.memory)),
            "generative_pool": float(len(self.pool_x)),
            "generative_mean_share": share,
        }

    def __len__(self) -> int:
        """Stored memories (the pool's size is ``stats["generative_pool"]``)."""
        return len(self.memory)

    @property
    def nbytes(self) -> int:
        """Bytes of the GSEMM weights, norms, class means and labels (not the dreamed pool)."""
        return self.memory.nbytes

    def state_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory.state_dict(),
            "pool_x": self.pool_x.clone(),
            "pool_y": self.pool_y.clone(),
            "pool_share": self.pool_share.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (options and budget stay this source's)."""
        self.memory.load_state_dict(state["memory"])
        self.pool_x, self.pool_y = state["pool_x"].clone(), state["pool_y"].clone()
        self.pool_share = state["pool_share"].clone()

    def _check_pool(self) -> None:
        if len(self.pool_x) == 0:
            raise ValueError(f"{type(self).__name__} has nothing to replay (no class holds two memories to mix)")


class PPCASource:
    """Generative replay from per-class probabilistic PCA (Tipping & Bishop 1999).

    Each class c is a Gaussian ``x = μ_c + W_c z + σ_c ε`` with z ~ N(0, I_k),
    ε ~ N(0, I_N). The maximum-likelihood fit (Tipping & Bishop 1999,
    "Probabilistic principal component analysis", JRSS B 61(3)) takes the
    class's sample covariance S with eigenvalues
    λ_1 ≥ … ≥ λ_N and eigenvectors U, sets σ² to the mean of the N − k
    discarded eigenvalues and W = U_k (Λ_k − σ² I)^{1/2}. What is kept per
    class: μ (N floats), U_k (N × k), the k variances λ_j − σ², σ² (one
    float), the label and the item count (int64 each), so
    ``4 (N + N k + k + 1) + 16`` bytes; k is the largest that
    :meth:`capacity_for` fits when the stream's ``n_classes`` share the
    budget equally (a fixed k for every class, so a class that comes late is
    modelled as well as one that came first), and at most the rank of the
    class's data.

    A class seen again in a later experience is *merged*, not refitted: the
    old model's covariance ``W Wᵀ + σ² I`` and mean stand in for the items it
    was fitted on (weighted by their count), are pooled with the new items'
    mean and covariance, and the result is fitted again. The old items are
    gone, so this is the best the model can do without them; the variance
    the old model had put in its isotropic noise stays isotropic.

    :meth:`sample` draws classes uniformly among those seen (class-balanced
    replay). :meth:`sequence` returns ordered stretches: each stretch is one
    class, its latents an AR(1) walk ``z_t = ρ z_{t−1} + √(1−ρ²) η_t`` whose
    stationary law is the prior N(0, I), so each item is still a sample of
    the model while consecutive items are close (a smooth trajectory through
    the class, the generative analogue of an ordered replay).

    ``len`` is the number of items a buffer of the same bytes would hold
    (``nbytes // (4 N + 8)``): a generator has no items, and this makes a
    replay pass over it (the agent's sleep replays ``len`` items) as long as
    one over a buffer of equal budget.

    Args:
        budget_bytes: Bytes for every class's model.
        n_features: N, the width of an item row.
        n_classes: Classes of the stream (they share the budget equally).
        generator: Randomness of sampling.
        windows: Stretches per :meth:`sequence` draw.
        walk_correlation: ρ of the latent walk within a stretch.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        n_features: int,
        n_classes: int,
        generator: torch.Generator,
        windows: int = 8,
        walk_correlation: float = 0.9,
    ) -> None:
        name = type(self).__name__
        for key, value in (
            ("budget_bytes", budget_bytes),
            ("n_features", n_features),
            ("n_classes", n_classes),
            ("windows", windows),
        ):
            check_param(name, key, value, _POSITIVE_INT)
        check_param(name, "walk_correlation", walk_correlation, Interval(float, 0, 1, closed="left"))
        self.components = self.capacity_for(budget_bytes, n_features, n_classes)
        if self.components < 1:
            need = self.class_bytes(n_features, 1) * n_classes
            raise ConfigError(
                f"A PPCA source of {budget_bytes:,} bytes cannot hold a one-direction model of {n_features} "
                f"features for each of {n_classes} classes (that needs {need:,} bytes)."
            )
        self.budget_bytes, self.n_features, self.n_classes = budget_bytes, n_features, n_classes
        self.generator, self.windows, self.walk_correlation = generator, windows, walk_correlation
        self.classes: dict[int, dict[str, Tensor]] = {}
        """Per class: ``mean`` [N], ``directions`` [N, k], ``variances`` [k] (λ_j − σ²), ``noise`` σ², ``count``."""

    @staticmethod
    def class_bytes(n_features: int, components: int) -> int:
        """Bytes of one class's model with ``components`` directions."""
        return _FLOAT_BYTES * (n_features + n_features * components + components + 1) + 2 * _INT_BYTES

    @classmethod
    def capacity_for(cls, budget_bytes: int, n_features: int, n_classes: int) -> int:
        """Principal directions per class that fit when ``n_classes`` classes share ``budget_bytes`` (0: none).

        At most N − 1, so that some variance is left for σ².
        """
        share = budget_bytes // max(n_classes, 1) - cls.class_bytes(n_features, 0)
        return max(0, min(share // (_FLOAT_BYTES * (n_features + 1)), n_features - 1))

    # -------------------------------------------------------------- fitting
    def add(self, x: Tensor, y: Tensor) -> None:
        """Fit each class of the experience (merging with its earlier model, if any)."""
        x = x.flatten(1)
        if x.shape[1] != self.n_features:
            raise ConfigError(f"PPCASource models {self.n_features}-wide items. Got width {x.shape[1]} instead.")
        labels = [int(c) for c in torch.unique(y)]
        if len(set(self.classes) | set(labels)) > self.n_classes:
            raise ConfigError(
                f"PPCASource was built for {self.n_classes} classes; the stream has brought more "
                f"({len(set(self.classes) | set(labels))})."
            )
        for c in labels:
            items = x[y == c].double()
            count = len(items)
            mean = items.mean(0)
            centred = items - mean
            covariance = centred.T @ centred / count
            rank = count - 1  # of the centred items' covariance
            if c in self.classes:
                covariance, mean, count = self._merge(self.classes[c], covariance, mean, count)
                rank = self.n_features  # the old model's σ² I makes the pooled covariance full rank
            self.classes[c] = self._fit(covariance, mean, count, rank=rank)

    def _merge(
        self, old: dict[str, Tensor], covariance: Tensor, mean: Tensor, count: int
    ) -> tuple[Tensor, Tensor, int]:
        """Pool the old model's moments (count n₀) with the new items' (count n₁)."""
        n0, n1 = int(old["count"]), count
        u = old["directions"].double()
        old_cov = (u * old["variances"].double()) @ u.T + float(old["noise"]) * torch.eye(self.n_features).double()
        old_mean = old["mean"].double()
        n = n0 + n1
        shift = old_mean - mean
        pooled = (n0 * old_cov + n1 * covariance) / n + (n0 * n1 / n**2) * torch.outer(shift, shift)
        return pooled, (n0 * old_mean + n1 * mean) / n, n

    def _fit(self, covariance: Tensor, mean: Tensor, count: int, rank: int) -> dict[str, Tensor]:
        """Maximum-likelihood PPCA of a covariance: top-k directions, their excess variances, σ²."""
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1)
        k = max(1, min(self.components, rank))
        noise = eigenvalues[k:].mean()
        return {
            "mean": mean.float(),
            "directions": eigenvectors[:, :k].float().contiguous(),
            "variances": (eigenvalues[:k] - noise).clamp_min(0).float(),
            "noise": noise.float(),
            "count": torch.tensor(count),
        }

    # -------------------------------------------------------------- generating
    def _generate(self, c: int, z: Tensor, eps: Tensor) -> Tensor:
        model = self.classes[c]
        return model["mean"] + (z * model["variances"].sqrt()) @ model["directions"].T + model["noise"].sqrt() * eps

    def _labels(self, n: int, generator: torch.Generator) -> Tensor:
        if not self.classes:
            raise ValueError("cannot sample from an empty PPCASource")
        seen = torch.tensor(sorted(self.classes))
        return seen[torch.randint(len(seen), (n,), generator=generator)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` new items ``(x [n, N], y [n])``, classes uniform among those seen."""
        generator = generator or self.generator
        y = self._labels(n, generator)
        z = torch.randn(n, self.components, generator=generator)
        eps = torch.randn(n, self.n_features, generator=generator)
        x = torch.empty(n, self.n_features)
        for c in torch.unique(y).tolist():
            rows = y == c
            k = self.classes[c]["directions"].shape[1]
            x[rows] = self._generate(c, z[rows, :k], eps[rows])
        return x, y

    def sequence(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` new items as about ``windows`` stretches, each one class along a latent AR(1) walk."""
        generator = generator or self.generator
        length = max(1, n // self.windows)
        stretches = -(-n // length)
        labels = self._labels(stretches, generator)
        rho = self.walk_correlation
        z = torch.randn(stretches, length, self.components, generator=generator)
        for t in range(1, length):  # z_t = ρ z_{t-1} + √(1-ρ²) η_t keeps every z_t ~ N(0, I)
            z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho * rho) * z[:, t]
        eps = torch.randn(stretches, length, self.n_features, generator=generator)
        x = torch.empty(stretches, length, self.n_features)
        for s, c in enumerate(labels.tolist()):
            k = self.classes[c]["directions"].shape[1]
            x[s] = self._generate(c, z[s, :, :k], eps[s])
        return x.flatten(0, 1)[:n], labels.repeat_interleave(length)[:n]

    # -------------------------------------------------------------- bookkeeping
    @property
    def stats(self) -> dict[str, float]:
        """Directions per class, classes modelled, and the mean share of variance the directions explain."""
        explained = []
        for m in self.classes.values():
            kept = float(m["variances"].sum() + len(m["variances"]) * m["noise"])  # Σ_{j<=k} λ_j
            explained.append(kept / max(float(m["variances"].sum() + self.n_features * m["noise"]), 1e-12))
        return {
            "ppca_components": float(self.components),
            "ppca_classes": float(len(self.classes)),
            "ppca_explained": sum(explained) / len(explained) if explained else float("nan"),
        }

    def __len__(self) -> int:
        return self.nbytes // (_FLOAT_BYTES * self.n_features + _INT_BYTES)

    @property
    def nbytes(self) -> int:
        """Bytes of every class's mean, directions, variances, σ², label and count."""
        return sum(self.class_bytes(self.n_features, m["directions"].shape[1]) for m in self.classes.values())

    def state_dict(self) -> dict[str, Any]:
        return {c: {k: v.clone() for k, v in m.items()} for c, m in self.classes.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (options and budget stay this source's)."""
        self.classes = {int(c): {k: v.clone() for k, v in m.items()} for c, m in state.items()}
