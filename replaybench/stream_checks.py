"""Conformance of streams, and the tiny streams agents are checked on.

:func:`check_stream` holds a registered stream to
:class:`replaybench.protocols.Stream` and to what the runner and the
evaluators assume of it; :func:`tiny_stream` cuts a built stream down for
:func:`replaybench.checks.check_agent`. Both are exported by
:mod:`replaybench.checks`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch

from replaybench.check_report import CheckFailed, CheckReport, CheckSkipped, expect
from replaybench.errors import ConfigError, DataMissingError, one_line
from replaybench.evaluation import PROBE_LABELS_KEY
from replaybench.protocols import (
    OPTIONAL_HOOKS,
    QUERY_METHOD,
    DescribedStream,
    Experience,
    Scenario,
    SelfScoringStream,
    SingleTaskStream,
    Stream,
)
from replaybench.runner import make_stream
from replaybench.streams.base import TensorStream
from replaybench.streams.rl import RLStream


# --- tiny streams ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TinySize:
    """How much of a stream :func:`tiny_stream` keeps."""

    experiences: int = 2
    train_items: int = 40
    """Training items per experience, spread over its classes."""
    test_items: int = 20
    step_budget: int = 300
    """RL: env steps per experience."""
    eval_episodes: int = 2
    """RL: greedy evaluation episodes (the first evaluation seeds)."""


TINY = TinySize()


def _balanced_rows(labels: torch.Tensor | None, n_rows: int, k: int) -> torch.Tensor:
    """Row indices in order: about ``k`` rows with every label present, or the first ``k`` without labels."""
    if labels is None or labels.ndim != 1:
        return torch.arange(min(k, n_rows))
    classes = torch.unique(labels)
    per_class = max(1, math.ceil(k / len(classes)))
    return torch.cat([torch.nonzero(labels == c).squeeze(1)[:per_class] for c in classes]).sort().values


def tiny_stream(stream: Stream, size: TinySize = TINY) -> Stream:
    """The first few experiences of ``stream``, each cut down, named ``<name>[tiny]``.

    Tensor streams keep ``size.train_items`` / ``size.test_items`` items per
    experience with every class of the experience present; RL streams keep
    ``size.step_budget`` env steps and ``size.eval_episodes`` evaluation
    seeds. The fingerprint is recomputed from the new name and what was kept,
    so a tiny stream never claims its source's.

    Raises:
        ConfigError: A stream type this function does not know how to cut.
    """
    name = f"{stream.name}[tiny]"
    if isinstance(stream, RLStream):
        experiences, tasks = [], [dict(t) for t in stream.definition["tasks"][: size.experiences]]
        for experience, task in zip(stream.experiences, tasks):
            seeds = tuple(experience.info["eval_seeds"])[: size.eval_episodes]
            budget = min(experience.step_budget, size.step_budget)
            info = {**experience.info, "eval_seeds": seeds, "eval_episodes": len(seeds)}
            experiences.append(dataclasses.replace(experience, step_budget=budget, info=info))
            task.update(step_budget=budget, eval_seeds=list(seeds))
        definition = {**stream.definition, "name": name, "tasks": tasks}
        return dataclasses.replace(stream, name=name, experiences=tuple(experiences), definition=definition)
    if isinstance(stream, TensorStream):
        experiences, records = [], []
        for e in stream.experiences[: size.experiences]:
            train = _balanced_rows(
                e.train_y if e.train_y is not None else e.info.get(PROBE_LABELS_KEY), len(e.train_x), size.train_items
            )
            test = _balanced_rows(e.test_y, len(e.test_x), size.test_items)
            info = dict(e.info)
            if info.get(PROBE_LABELS_KEY) is not None:  # the probe's labels follow the kept training items
                info[PROBE_LABELS_KEY] = info[PROBE_LABELS_KEY][train]
            experiences.append(
                dataclasses.replace(
                    e,
                    train_x=e.train_x[train],
                    train_y=None if e.train_y is None else e.train_y[train],
                    test_x=e.test_x[test],
                    test_y=None if e.test_y is None else e.test_y[test],
                    info=info,
                )
            )
            records.append(train.numpy().tobytes() + test.numpy().tobytes())
        prior = [*stream.split_record[: len(records)], *[b""] * len(records)]
        return dataclasses.replace(
            stream,
            name=name,
            experiences=tuple(experiences),
            params={**stream.params, "tiny": dataclasses.asdict(size)},
            split_record=tuple(p + r for p, r in zip(prior, records)),
            _fingerprint=[],
        )
    raise ConfigError(
        f"Cannot cut stream {stream.name!r} ({type(stream).__name__}) down to a tiny one: "
        "tiny_stream knows TensorStream and RLStream."
    )


# --- the checks -----------------------------------------------------------------------------
SCENARIOS = frozenset(typing.get_args(Scenario))
_LABELLED = {"class-il", "domain-il", "task-il", "unsupervised"}
"""Scenarios whose experiences carry class labels (the probe's, for unsupervised)."""
_KIND_OF_SCENARIO = {
    "unsupervised": "unsupervised",
    "rl": "rl",
    "sequence": "sequence",
    "class-il": "supervised",
    "domain-il": "supervised",
    "task-il": "supervised",
}


def _identity(stream: Stream) -> str:
    for attr in ("name", "version"):
        value = getattr(stream, attr, None)
        expect(isinstance(value, str) and bool(value), f"{attr} must be a non-empty str; got {value!r}")
    expect(stream.scenario in SCENARIOS, f"scenario {stream.scenario!r} is none of {sorted(SCENARIOS)}")
    expect(isinstance(stream.n_classes, int) and stream.n_classes >= 0, f"n_classes is {stream.n_classes!r}")
    shape = stream.input_shape
    expect(
        isinstance(shape, tuple) and all(isinstance(d, int) and d > 0 for d in shape),
        f"input_shape must be a tuple of positive ints; got {shape!r}",
    )
    return f"{stream.name} v{stream.version}, {stream.scenario}, input {list(shape)}, {stream.n_classes} classes"


def _fingerprint(stream: Stream, again: Stream) -> str:
    first, second = stream.fingerprint, again.fingerprint
    expect(isinstance(first, str) and len(first) > 0, f"fingerprint is {first!r}; expected a non-empty str")
    expect(first == second, f"two builds gave different fingerprints ({first[:12]} vs {second[:12]})")
    return f"{first[:16]}… on both builds"


def _experiences(stream: Stream) -> str:
    experiences = list(stream.experiences)
    expect(len(experiences) > 0, "the stream has no experiences")
    expect(all(isinstance(e, Experience) for e in experiences), "an experience is not a protocols.Experience")
    indices = [e.index for e in experiences]
    expect(indices == list(range(len(experiences))), f"indices are {indices}; expected 0..{len(experiences) - 1}")
    kinds = sorted({e.kind for e in experiences})
    expect(set(kinds) <= set(QUERY_METHOD), f"kinds {kinds} include unknown ones; known: {sorted(QUERY_METHOD)}")
    expected = _KIND_OF_SCENARIO.get(stream.scenario)
    expect(kinds == [expected], f"a {stream.scenario} stream must hold {expected!r} experiences; got {kinds}")
    return f"{len(experiences)} {kinds[0]} experiences, indices 0..{len(experiences) - 1}"


def _check_split(stream: Stream, e: Experience, split: str) -> None:
    x, y = getattr(e, f"{split}_x"), getattr(e, f"{split}_y")
    where = f"experience {e.index} {split}"
    expect(
        isinstance(x, torch.Tensor) and x.dtype == torch.float32,
        f"{where}_x is {getattr(x, 'dtype', type(x).__name__)}; expected float32",
    )
    per_item = tuple(x.shape[1:]) if e.kind != "sequence" else tuple(x.shape[2:])
    expect(
        per_item == stream.input_shape and len(x) > 0,
        f"{where}_x has shape {list(x.shape)}; expected [N{', T' if e.kind == 'sequence' else ''}, "
        f"*{list(stream.input_shape)}] with N > 0",
    )
    if e.kind == "unsupervised" and split == "train":
        expect(y is None, f"{where}_y must be None (labels are the probe's: info[{PROBE_LABELS_KEY!r}])")
        y = e.info.get(PROBE_LABELS_KEY)
        where = f"experience {e.index} info[{PROBE_LABELS_KEY!r}]"
    expect(isinstance(y, torch.Tensor) and len(y) == len(x), f"{where} labels must be a tensor of {len(x)} rows")
    if e.kind == "sequence":
        expect(y.shape[1] == x.shape[1], f"{where}_y has shape {list(y.shape)} for inputs {list(x.shape)}")
    else:
        expect(
            y.dtype == torch.int64 and y.ndim == 1, f"{where} labels are {y.dtype} {list(y.shape)}; expected int64 [N]"
        )


def _tensors(stream: Stream) -> str:
    for e in stream.experiences:
        for split in ("train", "test"):
            _check_split(stream, e, split)
    return "float32 inputs of the input shape, labels aligned with them"


def _labels(stream: Stream) -> str:
    for e in stream.experiences:
        train_y = e.train_y if e.train_y is not None else e.info[PROBE_LABELS_KEY]
        present = sorted(int(c) for c in torch.unique(train_y))
        expect(
            len(set(e.classes)) == len(e.classes) and sorted(e.classes) == present,
            f"experience {e.index} declares classes {list(e.classes)} but its training labels are {present}",
        )
        test = sorted(int(c) for c in torch.unique(e.test_y))
        expect(set(test) <= set(present), f"experience {e.index}'s test labels {test} are not among {present}")
        expect(
            present[0] >= 0 and present[-1] < stream.n_classes,
            f"experience {e.index}'s labels {present} leave [0, n_classes = {stream.n_classes})",
        )
    return f"classes are the labels present, within [0, {stream.n_classes})"


def _task_ids(stream: Stream) -> str:
    ids = [e.task_id for e in stream.experiences]
    if stream.scenario == "task-il":
        expect(all(isinstance(t, int) for t in ids), f"task-il reveals task ids; got {ids}")
        return f"task ids {ids}"
    expect(all(t is None for t in ids), f"{stream.scenario} must not reveal task ids; got {ids}")
    return "no task ids, as the scenario says"


def _environments(stream: Stream) -> str:
    for e in stream.experiences:
        where = f"experience {e.index}"
        expect(isinstance(e.step_budget, int) and e.step_budget > 0, f"{where}'s step_budget is {e.step_budget!r}")
        expect(isinstance(e.info.get("max_return"), numbers.Real), f"{where}'s info has no numeric 'max_return'")
        expect(e.info.get("min_return", -math.inf) < e.info["max_return"], f"{where}'s min_return >= max_return")
        if e.env_factory is None:
            raise CheckFailed(f"{where} has no env_factory")
        env = e.env_factory(0)
        try:
            expect(
                isinstance(env, gymnasium.Env), f"{where}'s env_factory built {type(env).__name__}, not a gymnasium.Env"
            )
            obs, _ = env.reset(seed=0)
            expect(
                env.observation_space.contains(obs), f"{where}'s first observation is outside {env.observation_space}"
            )
            obs, *_ = env.step(env.action_space.sample())
            expect(
                env.observation_space.contains(obs),
                f"{where}'s observation after a step is outside {env.observation_space}",
            )
            expect(
                tuple(env.observation_space.shape) == tuple(stream.input_shape),
                f"{where}'s observations are {env.observation_space.shape}; input_shape says {stream.input_shape}",
            )
        finally:
            env.close()
    return f"{len(stream.experiences)} environments reset and step inside their spaces"


class _ProbeAgent:
    """A constant agent, to call a stream's own scorer: zeros (action 0) for every query."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.width = stream.experiences[0].info.get("d_out", stream.n_classes)

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if self.stream.scenario == "sequence":
            return torch.zeros(*x.shape[:-1], self.width)
        return torch.zeros(len(x), self.stream.n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()

    def act(self, obs: Any, task_id: int | None = None) -> np.ndarray:
        return np.zeros(len(obs), dtype=np.int64)

    def begin_episodes(self, n: int) -> None:
        """Nothing to forget."""


def _signature_accepts(method: Callable[..., Any], *args: Any) -> None:
    try:
        inspect.signature(method).bind(*args)
    except TypeError as exc:
        expect(
            False, f"{method.__name__}{inspect.signature(method)} cannot be called with {len(args)} argument(s): {exc}"
        )


def _evaluate(stream: Any) -> str:
    tiny: Any = _tiny_or_whole(stream)  # a tiny stream is of its source's class, so it scores itself too
    _signature_accepts(tiny.evaluate, _ProbeAgent(tiny), tiny.experiences[0])
    result = tiny.evaluate(_ProbeAgent(tiny), tiny.experiences[0])
    if isinstance(result, Mapping):
        expect("score" in result, f"evaluate returned a mapping without 'score': {sorted(result)}")
        bad = {k: v for k, v in result.items() if not isinstance(v, numbers.Real) or isinstance(v, bool)}
        expect(not bad, f"evaluate returned non-numbers {bad}")
        score = result["score"]
    else:
        expect(
            isinstance(result, numbers.Real) and not isinstance(result, bool),
            f"evaluate returned {type(result).__name__}; expected a float or a mapping with 'score'",
        )
        score = result
    expect(math.isfinite(score), f"evaluate's score is {score}")
    return f"a constant agent scores {score:.3g} on experience 0"


def _single_task(stream: Any) -> str:
    index = len(stream.experiences) - 1
    _signature_accepts(stream.single_task, index)
    alone = stream.single_task(index)
    expect(isinstance(alone, Stream), f"single_task returned {type(alone).__name__}, not a Stream")
    (only,) = alone.experiences
    expect(
        only.index == 0 and only.kind == stream.experiences[index].kind,
        f"single_task({index})'s experience has index {only.index} and kind {only.kind!r}",
    )
    expect(alone.fingerprint != stream.fingerprint, f"single_task({index}) claims the whole stream's fingerprint")
    return f"single_task({index}) is a one-experience stream with its own fingerprint"


def _describe(stream: Any) -> str:
    _signature_accepts(stream.describe)
    description = stream.describe()
    expect(isinstance(description, dict), f"describe returned {type(description).__name__}; expected a dict")
    json.dumps(description)  # raises (and so fails the check) on anything not JSON-serialisable
    return f"a JSON-serialisable dict of {len(description)} keys"


STREAM_HOOK_CHECKS: dict[str, tuple[type, Callable[[Any], str]]] = {
    "evaluate": (SelfScoringStream, _evaluate),
    "single_task": (SingleTaskStream, _single_task),
    "describe": (DescribedStream, _describe),
}
"""The optional stream hooks of :data:`replaybench.protocols.OPTIONAL_HOOKS` and their checks."""


def _tiny_or_whole(stream: Stream) -> Stream:
    try:
        return tiny_stream(stream)
    except ConfigError:
        return stream


def _shrinks(stream: Stream) -> str:
    try:
        tiny = tiny_stream(stream)
    except ConfigError as exc:
        raise CheckSkipped(f"{one_line(exc, with_type=False)} check_agent uses it whole") from None
    expect(
        0 < len(tiny.experiences) <= min(TINY.experiences, len(stream.experiences)),
        f"tiny_stream kept {len(tiny.experiences)} experiences",
    )
    expect(tiny.fingerprint != stream.fingerprint, "the tiny stream claims the whole stream's fingerprint")
    return f"{tiny.name}: {len(tiny.experiences)} experiences, its own fingerprint"


def check_stream(
    spec: str, *, options: Mapping[str, Any] | None = None, data_dir: str | None = None, download: bool = False
) -> CheckReport:
    """Check the registered stream ``spec``, built with ``options``.

    The stream is built twice (the fingerprints must agree). A stream whose
    data is missing (:class:`~replaybench.errors.DataMissingError`, e.g.
    ``split-mnist`` before ``--download``) is reported as skipped, not failed.

    Example:
        >>> check_stream("split-digits").ok  # doctest: +SKIP
        True
    """
    report = CheckReport(f"stream {spec!r}")
    built: list[Stream] = []

    def build() -> str:
        try:
            built.extend(
                make_stream(spec, data_dir=data_dir, download=download, **dict(options or {})) for _ in range(2)
            )
        except DataMissingError as exc:
            raise CheckSkipped(f"data missing ({one_line(exc, with_type=False)})") from None
        expect(isinstance(built[0], Stream), f"the builder returned {type(built[0]).__name__}, not a Stream")
        return f"{type(built[0]).__name__}, {len(built[0].experiences)} experiences"

    if not report.run("build", build):
        return report
    stream = built[0]
    if not (
        report.run("identity", lambda: _identity(stream)) and report.run("experiences", lambda: _experiences(stream))
    ):
        return report
    # The checks that apply to this stream's scenario (the experiences check made them all of one kind).
    applicable = {
        "tensors": (_tensors, stream.scenario != "rl"),
        "labels": (_labels, stream.scenario in _LABELLED),
        "task ids": (_task_ids, stream.scenario in _LABELLED),
        "environments": (_environments, stream.scenario == "rl"),
    }
    for name, (check, applies) in applicable.items():
        if applies:
            report.run(name, functools.partial(check, stream))
    report.run("fingerprint", lambda: _fingerprint(stream, built[1]))
    for hook, (protocol, _) in OPTIONAL_HOOKS.items():
        if hook in STREAM_HOOK_CHECKS and isinstance(stream, protocol):
            report.run(hook, functools.partial(STREAM_HOOK_CHECKS[hook][1], stream))
    report.run("tiny", lambda: _shrinks(stream))
    return report
