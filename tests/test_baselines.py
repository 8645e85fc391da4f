"""The baselines behave as the literature says on real class-IL data."""

from __future__ import annotations

import pytest
from conftest import needs_fashion_mnist

from replaybench.runner import RunSpec, make_stream, run


@pytest.fixture(scope="module")
def split_fmnist():
    return make_stream("split-fmnist")


@needs_fashion_mnist
def test_naive_forgets_and_replay_remembers_on_split_fmnist(split_fmnist):
    naive = run(RunSpec(stream="split-fmnist", agent="naive", seed=0), stream=split_fmnist)
    er = run(
        RunSpec(stream="split-fmnist", agent="er-balanced", seed=0, agent_options={"memory_size": 1000}),
        stream=split_fmnist,
    )
    assert naive.metrics["acc"] < 0.3  # class-IL fine-tuning keeps only the last task
    assert naive.metrics["forgetting_max"] > 0.8
    assert er.metrics["acc"] > 0.6  # 100 stored items per class are enough to keep most
    assert er.costs["replay_samples"] > 0


def test_joint_is_the_upper_bound_on_digits():
    stream = make_stream("split-digits")
    opts = {"epochs": 10, "lr": 0.05, "batch_size": 32, "hidden": [64]}
    joint = run(RunSpec(stream="split-digits", agent="joint", agent_options=opts), stream=stream)
    naive = run(RunSpec(stream="split-digits", agent="naive", agent_options=opts), stream=stream)
    assert joint.metrics["acc"] > 0.85 > naive.metrics["acc"] + 0.4


@pytest.mark.parametrize("agent", ["ewc", "lwf"])
def test_regularisers_run_and_learn_the_current_task(agent):
    stream = make_stream("split-digits-task")
    result = run(
        RunSpec(
            stream="split-digits-task",
            agent=agent,
            agent_options={"epochs": 5, "lr": 0.05, "batch_size": 32, "hidden": [64]},
        ),
        stream=stream,
    )
    assert result.metrics["plasticity"] > 0.9  # task-IL: 2-way choices are learned
    assert result.metrics["acc"] > 0.8  # and in task-IL mostly kept
