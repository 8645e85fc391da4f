"""Interoperation with Avalanche: any tensor stream as an Avalanche benchmark.

The tensors are wrapped, not copied, so Avalanche strategies see exactly the
data our runner evaluates on. Task-IL streams carry their task labels;
other scenarios use task label 0, as Avalanche's class-IL benchmarks do.

Example:
    >>> bm = to_avalanche_benchmark(make_stream("split-digits"))  # doctest: +SKIP
    >>> len(bm.train_stream)  # doctest: +SKIP
    5
"""

from __future__ import annotations

from typing import Any

from replaybench.errors import ConfigError, require_extra
from replaybench.protocols import Experience, Stream


def to_avalanche_dataset(x, y, task_label: int) -> Any:
    """An Avalanche classification dataset over the tensors ``x`` and ``y``."""
    require_extra("avalanche", "avalanche", "Avalanche export", package="avalanche-lib")
    from avalanche.benchmarks.utils.classification_dataset import (
        _make_taskaware_tensor_classification_dataset,
    )

    return _make_taskaware_tensor_classification_dataset(x, y, task_labels=int(task_label))


def _task_label(experience: Experience) -> int:
    return experience.task_id if experience.task_id is not None else 0


def to_avalanche_benchmark(stream: Stream) -> Any:
    """Export a supervised stream as an Avalanche ``CLScenario`` with
    ``train_stream`` and ``test_stream`` (classes timeline and task labels set)."""
    require_extra("avalanche", "avalanche", "Avalanche export", package="avalanche-lib")
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels

    if any(e.kind != "supervised" for e in stream.experiences):
        raise ConfigError(f"Only supervised streams export to Avalanche; {stream.name} is {stream.scenario}.")
    train = [to_avalanche_dataset(e.train_x, e.train_y, _task_label(e)) for e in stream.experiences]
    test = [to_avalanche_dataset(e.test_x, e.test_y, _task_label(e)) for e in stream.experiences]
    return with_task_labels(with_classes_timeline(benchmark_from_datasets(train=train, test=test)))
