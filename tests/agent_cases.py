"""Every registered agent (and the replay choices no registered name reaches), run tiny through the runner.

Shared by the device tests: the simulated device (``test_device_placement.py``) and CUDA
(``test_cuda.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replaybench.checks import DEFAULT_STREAMS, _fast_options, tiny_stream
from replaybench.registry import AGENTS
from replaybench.results import RunResult
from replaybench.runner import RunSpec, agent_class_and_config, agent_kinds, make_stream, run
from replaybench.stream_checks import TINY, TinySize

REPLAY_VARIANTS = [
    {"learner": "sigprop", "source": "gsemm", "schedule": "sequence"},
    {"learner": "efp", "source": "generative", "generator": "ppca"},
    {"learner": "backprop", "source": "wave", "schedule": "sequence"},
    {"learner": "stdp", "schedule": "sleep", "source": "none"},
    {"learner": "backprop", "source": "buffer", "priority": "forgetting", "decay": 0.5, "gist": 0.1},
]
"""Learner x source x schedule choices that no registered default reaches."""

CASES: list[tuple[str, dict[str, Any]]] = [(n, {}) for n in AGENTS.names() if not n.endswith(":*")]
CASES += [("avalanche:Naive", {})] + [("replay", options) for options in REPLAY_VARIANTS]
IDS = [name + "".join(f"-{v}" for v in options.values()) for name, options in CASES]


def kinds_of(name: str, options: dict[str, Any]) -> frozenset[str]:
    """The experience kinds agent ``name`` supports."""
    cls, _ = agent_class_and_config(name, options)
    return frozenset(agent_kinds(name, cls))


def tiny_run(
    name: str,
    options: dict[str, Any],
    device: str,
    *,
    seed: int = 0,
    size: TinySize = TINY,
    prepare: Callable[[Any], Any] = lambda stream: stream,
) -> RunResult:
    """Run agent ``name`` with the check's fast options on a cut-down default stream for its kinds."""
    cls, config = agent_class_and_config(name, options)
    stream_name = next(DEFAULT_STREAMS[k] for k in DEFAULT_STREAMS if k in agent_kinds(name, cls))
    tiny = prepare(tiny_stream(make_stream(stream_name), size))
    options = _fast_options(name, config, options)
    return run(RunSpec(stream=tiny.name, agent=name, seed=seed, agent_options=options, device=device), stream=tiny)
