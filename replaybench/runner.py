"""The runner owns the loop: build, seed, learn each experience, evaluate all.

Example:
    >>> result = run(RunSpec(stream="split-digits", agent="naive", seed=0))  # doctest: +SKIP
    >>> len(result.R)  # doctest: +SKIP
    5
"""

from __future__ import annotations

import dataclasses
import json
import random
import resource
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from replaybench import metrics, progress
from replaybench.config_files import MAX_SEED
from replaybench.errors import AgentError, ConfigError, ReplaybenchError, one_line
from replaybench.evaluation import evaluate_scores
from replaybench.params import InstanceOf, Interval, build_config, check_param, config_to_dict
from replaybench.protocols import (
    QUERY_METHOD,
    CountsState,
    KeepsEpochLosses,
    KeepsTrainingCurve,
    SingleTaskStream,
    Stream,
)
from replaybench.provenance import provenance
from replaybench.registry import AGENTS, STREAMS
from replaybench.results import RunResult, run_id


@dataclass(frozen=True)
class RunSpec:
    """One run: a stream, an agent with its options, and a seed."""

    stream: str
    agent: str
    seed: int = 0
    agent_options: Mapping[str, Any] = field(default_factory=dict)
    """Agent config overrides (TOML table or ``-o key=value`` options)."""
    stream_options: Mapping[str, Any] = field(default_factory=dict)
    """Stream builder overrides, e.g. ``{"train_per_class": 100}``."""
    data_dir: str | None = None
    download: bool = False
    device: str = "cpu"
    forward_transfer_reference: bool = False
    """Also train a fresh agent on each task alone and report Continual World's
    forward transfer (streams that offer ``single_task(i)``, agents that keep
    ``last_curve``)."""
    intransigence_reference: bool = False
    """Also run ``joint`` (with this spec's training-loop options) on the same
    stream and seed, and report intransigence against its diagonal."""
    preset: str | None = None
    """Where ``agent_options`` came from when a board's preset supplied them (e.g. "quick v2");
    recorded in the result's provenance. The options themselves are what counts."""

    def __post_init__(self) -> None:
        for name in ("stream", "agent"):
            check_param("RunSpec", name, getattr(self, name), InstanceOf(str))
        check_param("RunSpec", "seed", self.seed, Interval(int, 0, MAX_SEED))
        check_device(self.device)
        object.__setattr__(self, "agent_options", MappingProxyType(dict(self.agent_options)))
        object.__setattr__(self, "stream_options", MappingProxyType(dict(self.stream_options)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "agent": self.agent,
            "seed": self.seed,
            "agent_options": dict(self.agent_options),
            "stream_options": dict(self.stream_options),
            "data_dir": self.data_dir,
            "download": self.download,
            "device": self.device,
            "forward_transfer_reference": self.forward_transfer_reference,
            "intransigence_reference": self.intransigence_reference,
            **({"preset": self.preset} if self.preset is not None else {}),
        }

    @property
    def run_id(self) -> str:
        """``<stream>__<agent>__seed<k>__<options hash>`` (:func:`replaybench.results.run_id`)."""
        return run_id(self.to_dict())


def check_device(device: str, *, available: bool = False) -> None:
    """Refuse a device torch cannot parse; with ``available``, also one this machine lacks.

    Availability is checked where runs execute on this machine (inline and
    local executors); a Ray or Slurm worker may have devices the driver lacks.
    """
    if not isinstance(device, str):
        raise ConfigError(f"The 'device' parameter of RunSpec must be a str. Got {device!r} instead.")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"Unknown device {device!r}; expected e.g. 'cpu', 'cuda' or 'cuda:1'.") from None
    if not available or parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Device {device!r} asked for, but CUDA is not available on this machine.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(
                f"Device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"Device {device!r} asked for, but MPS is not available on this machine.")
    else:
        raise ConfigError(f"Device type {parsed.type!r} is not supported; use 'cpu', 'cuda' or 'mps'.")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_stream(name: str, *, data_dir: str | None = None, download: bool = False, **options: Any) -> Stream:
    """Build a registered stream, with ``options`` overriding its defaults."""
    factory, spec = STREAMS.load(name)
    kwargs = {**spec.kwargs, **options}
    try:
        return factory(**kwargs, data_dir=data_dir, download=download)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"Stream {name!r}: {exc}.") from None
        raise


def agent_class_and_config(name: str, options: Mapping[str, Any]) -> tuple[type, Any]:
    """Resolve an agent name and validate its options into its Config."""
    agent_cls, spec = AGENTS.load(name)
    if not isinstance(agent_cls, type):
        raise ConfigError(f"Agent {name!r} ({spec.entry_point}) is not a class.")
    config_cls = getattr(agent_cls, "Config", None)  # the contract's required attribute, not an optional hook
    if config_cls is None:
        raise ConfigError(f"Agent {name!r} ({spec.entry_point}) has no nested Config class.")
    return agent_cls, build_config(config_cls, {**spec.kwargs, **options}, owner=f"agent {name!r}")


def online_options(name: str, stream: Stream, options: Mapping[str, Any]) -> dict[str, Any]:
    """An online stream (one pass, batches of k) fixes ``epochs = 1`` and ``batch_size = k``."""
    sizes = {e.info["online_batch_size"] for e in stream.experiences if "online_batch_size" in e.info}
    if not sizes:
        return dict(options)
    (k,) = sizes
    _, config = agent_class_and_config(name, options)
    fields = {f.name for f in dataclasses.fields(config)}
    if "epochs" not in fields or "batch_size" not in fields:
        raise ConfigError(
            f"Stream {stream.name!r} is online (one pass in batches of {k}); agent {name!r} "
            "has no epochs/batch_size options to follow it."
        )
    if options.get("epochs", 1) != 1 or options.get("batch_size", k) != k:
        raise ConfigError(
            f"Stream {stream.name!r} is online (one pass in batches of {k}); "
            f"got epochs={options.get('epochs', 1)}, batch_size={options.get('batch_size', k)}."
        )
    return {**options, "epochs": 1, "batch_size": k}


def make_agent(
    name: str, stream: Stream, *, seed: int, options: Mapping[str, Any] | None = None, device: str = "cpu"
) -> Any:
    """Build agent ``name`` for ``stream``, refusing a kind it does not support."""
    return build_agent(name, stream, seed=seed, options=options, device=device)[0]


def build_agent(
    name: str, stream: Stream, *, seed: int, options: Mapping[str, Any] | None = None, device: str = "cpu"
) -> tuple[Any, Any]:
    """The agent and the validated config it was built with.

    Raises:
        ConfigError: a bad option, a kind the agent does not support, a
            missing query method.
        AgentError: the agent's ``__init__`` raised (named, on one line).
    """
    agent_cls, config = agent_class_and_config(name, online_options(name, stream, options or {}))
    needed = {e.kind for e in stream.experiences}
    kinds = agent_kinds(name, agent_cls)
    if not needed <= kinds:
        raise ConfigError(
            f"Agent {name!r} supports {sorted(kinds) or 'no'} experiences; stream {stream.name!r} "
            f"needs {sorted(needed)}."
        )
    missing = missing_query_methods(agent_cls, needed)
    if missing:
        raise ConfigError(f"Agent {name!r} declares kinds without their query methods: {', '.join(missing)}.")
    try:
        agent = agent_cls(stream=stream, config=config, seed=seed, device=device)
    except ReplaybenchError:
        raise
    except Exception as exc:
        raise AgentError(f"Agent {name!r} raised {one_line(exc)} while being built for {stream.name!r}.") from exc
    return agent, config


def missing_query_methods(agent_cls: type, kinds: Iterable[str]) -> list[str]:
    """``"kind: method()"`` for each of ``kinds`` whose query method (:data:`QUERY_METHOD`) the class lacks."""
    return [
        f"{k}: {QUERY_METHOD[k]}()" for k in sorted(kinds) if not callable(getattr(agent_cls, QUERY_METHOD[k], None))
    ]


def agent_kinds(name: str, agent_cls: type) -> set[str]:
    """The experience kinds an agent class declares, checked against the known kinds."""
    kinds = getattr(agent_cls, "kinds", None)
    if not isinstance(kinds, (set, frozenset, tuple, list)) or not kinds:
        raise ConfigError(
            f"Agent {name!r} must declare the experience kinds it supports, "
            f"e.g. kinds = frozenset({{'supervised'}}); got {kinds!r}."
        )
    unknown = sorted(set(kinds) - set(QUERY_METHOD))
    if unknown:
        raise ConfigError(f"Agent {name!r} declares unknown kinds {unknown}; known: {sorted(QUERY_METHOD)}.")
    return set(kinds)


def state_parts_of(agent: CountsState, name: str, index: int) -> dict[str, int]:
    """The agent's ``state_bytes()`` after experience ``index`` as ``{part: bytes}``.

    Raises:
        AgentError: it raised, or returned other than str keys and non-negative ints
            (the runner and ``replaybench check agent`` hold it to the same rule here).
    """
    try:
        parts = agent.state_bytes()
    except ReplaybenchError:
        raise
    except Exception as exc:
        raise AgentError(f"Agent {name!r} raised {one_line(exc)} in state_bytes after experience {index}.") from exc
    if not isinstance(parts, Mapping):
        raise AgentError(
            f"Agent {name!r}'s state_bytes after experience {index} must return a mapping; got {type(parts).__name__}."
        )
    bad = {k: v for k, v in parts.items() if not isinstance(k, str) or not _is_count(v)}
    if bad:
        raise AgentError(
            f"Agent {name!r}'s state_bytes after experience {index} must map str to non-negative ints; got {bad!r}."
        )
    return {k: int(v) for k, v in parts.items()}


def _is_count(value: Any) -> bool:
    """A non-negative int (a NumPy integer too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run(spec: RunSpec, *, stream: Stream | None = None, joint_R: list[list[float]] | None = None) -> RunResult:
    """Run ``spec`` and return its result (nothing is written here).

    Args:
        spec: What to run.
        stream: An already-built stream for ``spec.stream`` (saves rebuilding
            it across seeds and agents).
        joint_R: R of a ``joint`` run on the same stream and seed; when given,
            intransigence is computed against its diagonal.

    Raises:
        ReplaybenchError: a bad spec, missing data, or a failing agent
            (wrapped as :class:`AgentError` with the experience it failed on).
    """
    stream = (
        stream
        if stream is not None
        else make_stream(spec.stream, data_dir=spec.data_dir, download=spec.download, **spec.stream_options)
    )
    if spec.intransigence_reference and joint_R is None:
        joint_R = _joint_reference(spec, stream)
    seed_everything(spec.seed)
    agent, agent_config = build_agent(
        spec.agent, stream, seed=spec.seed, options=spec.agent_options, device=spec.device
    )
    experiences = list(stream.experiences)
    if spec.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    secondary: dict[str, list[list[float]]] = {}

    def score_all(stage: str, name: str) -> tuple[list[float], dict[str, list[float]], float]:
        """R's row (the primary score) and the row of every secondary score; a non-finite score is refused."""
        t0 = time.perf_counter()
        try:
            cells = [evaluate_scores(agent, e, stream) for e in experiences]
        except ReplaybenchError:
            raise
        except Exception as exc:
            raise AgentError(
                f"Agent {spec.agent!r} raised {type(exc).__name__} while being evaluated {stage}: {exc}".splitlines()[0]
            ) from exc
        others = {k: [c[k] for c in cells] for k in cells[0] if k != "score"}
        scores = [c["score"] for c in cells]
        metrics.require_finite(scores, name, context=f"agent {spec.agent!r} evaluated {stage}")
        return scores, others, time.perf_counter() - t0

    start = time.perf_counter()
    baseline, _, _ = score_all("before training", "baseline")
    R: list[list[float]] = []
    per_experience: list[dict[str, Any]] = []
    curves: list[list[tuple[int, float]]] = []
    state_parts: list[dict[str, int]] = []
    with progress.session():
        for exp in progress.track(experiences, f"{spec.agent} on {spec.stream} (seed {spec.seed})"):
            t0 = time.perf_counter()
            try:
                stats = agent.learn(exp) or {}
            except ReplaybenchError:
                raise
            except Exception as exc:
                raise AgentError(
                    f"Agent {spec.agent!r} raised {type(exc).__name__} on experience {exp.index}: {exc}".splitlines()[0]
                ) from exc
            learn_s = time.perf_counter() - t0
            if isinstance(agent, KeepsTrainingCurve):
                curves.append([(int(step), float(ret)) for step, ret in agent.last_curve])
            if isinstance(agent, CountsState):
                state_parts.append(state_parts_of(agent, spec.agent, exp.index))
            epoch_losses = [float(v) for v in agent.last_epoch_losses] if isinstance(agent, KeepsEpochLosses) else []
            row, others, eval_s = score_all(f"after experience {exp.index}", f"R[{len(R)}]")
            R.append(row)
            for key, values in others.items():
                secondary.setdefault(key, []).append(values)
            per_experience.append(
                {
                    "learn_seconds": learn_s,
                    "eval_seconds": eval_s,
                    "peak_rss_mb": _peak_rss_mb(),
                    **{k: float(v) for k, v in stats.items() if isinstance(v, (int, float))},
                    **({"state_bytes": sum(state_parts[-1].values())} if state_parts else {}),
                    **({"epoch_losses": epoch_losses} if epoch_losses else {}),
                }
            )
    costs: dict[str, Any] = {
        "wall_seconds": time.perf_counter() - start,
        "learn_seconds": sum(p["learn_seconds"] for p in per_experience),
        "peak_rss_mb": _peak_rss_mb(),
        "per_experience": per_experience,
    }
    if "replay_samples" in per_experience[0]:
        costs["replay_samples"] = sum(p.get("replay_samples", 0.0) for p in per_experience)
    if state_parts:  # the peak is what a memory budget must hold; without the hook, unknown (no key)
        peak = max(state_parts, key=lambda parts: sum(parts.values()))
        costs["state_bytes"] = sum(peak.values())
        costs["state_bytes_parts"] = peak
    if spec.device.startswith("cuda"):
        costs["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    summary = metrics.summarize(R, baseline, joint_R, scenario=stream.scenario)
    extras: dict[str, Any] = {f"R_{key}": rows for key, rows in secondary.items()}
    if curves:
        extras["train_curves"] = curves
    if spec.forward_transfer_reference:
        per_task = _forward_transfer(spec, stream, curves)
        extras["forward_transfer_per_task"] = per_task
        finite = [v for v in per_task if np.isfinite(v)]
        summary["forward_transfer_cw"] = float(np.mean(finite)) if finite else None  # undefined, not a number
    return RunResult(
        spec=spec.to_dict(),
        R=R,
        baseline=baseline,
        metrics=summary,
        costs=costs,
        provenance=provenance(
            stream_fingerprint=stream.fingerprint,
            stream_version=stream.version,
            config=config_to_dict(agent_config),
            seed=spec.seed,
            preset=spec.preset,
            scenario=stream.scenario,
        ),
        extras=extras,
    )


_JOINT_CACHE: dict[str, list[list[float]]] = {}
"""R of joint reference runs in this process, by spec: a grid of agents on one stream and seed
needs one (a run is deterministic, so the cache cannot change a number)."""


def _joint_reference(spec: RunSpec, stream: Stream) -> list[list[float]]:
    """R of ``joint`` on ``spec``'s stream and seed, with the options of its training loop."""
    _, joint_config = agent_class_and_config("joint", {})
    names = {f.name for f in dataclasses.fields(joint_config)}
    reference = replace(
        spec,
        agent="joint",
        intransigence_reference=False,
        forward_transfer_reference=False,
        agent_options={k: v for k, v in spec.agent_options.items() if k in names},
    )
    key = json.dumps(reference.to_dict(), sort_keys=True, default=str)
    if key not in _JOINT_CACHE:
        if len(_JOINT_CACHE) >= 8:
            _JOINT_CACHE.pop(next(iter(_JOINT_CACHE)))
        _JOINT_CACHE[key] = run(reference, stream=stream).R
    return _JOINT_CACHE[key]


def _forward_transfer(spec: RunSpec, stream: Stream, curves: list) -> list[float]:
    """Continual World's FT_i for every task but the first, against single-task runs.

    The reference for task i is a fresh agent (same config and seed) trained
    on task i alone; both training curves are resampled on the same grid of
    the task's step budget before their AUCs are compared.
    """
    from replaybench.rl_metrics import episode_curve_on_grid, forward_transfer_auc

    if not isinstance(stream, SingleTaskStream) or len(curves) != len(stream.experiences):
        raise ConfigError(
            f"Forward transfer needs a stream with single_task() and an agent that keeps last_curve; "
            f"{stream.name!r} with {spec.agent!r} has neither or not both."
        )
    reference = replace(spec, forward_transfer_reference=False)
    out = []
    for i, exp in enumerate(stream.experiences):
        if i == 0:  # the first task's "transfer" is from nothing: CW reports it, but it is 0 by construction
            continue
        ref_curve = run(reference, stream=stream.single_task(i)).extras["train_curves"][0]
        grid = dict(
            step_budget=exp.step_budget,
            n_points=100,
            max_return=exp.info.get("max_return", 1.0),
            min_return=exp.info.get("min_return", 0.0),
        )
        out.append(
            forward_transfer_auc(episode_curve_on_grid(curves[i], **grid), episode_curve_on_grid(ref_curve, **grid))
        )
    return out
