"""Continual World's forward transfer through the runner's single-task reference runs."""

from __future__ import annotations

import math

import pytest

from replaybench.errors import ConfigError
from replaybench.rl_metrics import episode_curve_on_grid, forward_transfer_auc
from replaybench.runner import RunSpec, make_stream, run

TINY = {"learning_starts": 100}


def test_forward_transfer_matches_a_hand_made_reference_run():
    stream = make_stream("cartpole-conflict-2", steps_per_task=600)
    spec = RunSpec(
        stream="cartpole-conflict-2",
        agent="dqn-finetune",
        seed=0,
        agent_options=TINY,
        stream_options={"steps_per_task": 600},
        forward_transfer_reference=True,
    )
    result = run(spec, stream=stream)
    assert len(result.extras["train_curves"]) == 2
    (ft,) = result.extras["forward_transfer_per_task"]  # task 1 (task 0 is its own reference)

    reference = run(
        RunSpec(stream=spec.stream, agent=spec.agent, seed=0, agent_options=TINY), stream=stream.single_task(1)
    )
    exp = stream.experiences[1]
    grid = dict(
        step_budget=exp.step_budget, n_points=100, max_return=exp.info["max_return"], min_return=exp.info["min_return"]
    )
    expected = forward_transfer_auc(
        episode_curve_on_grid(result.extras["train_curves"][1], **grid),
        episode_curve_on_grid(reference.extras["train_curves"][0], **grid),
    )
    assert ft == pytest.approx(expected, nan_ok=True)
    assert math.isnan(ft) or result.metrics["forward_transfer_cw"] == pytest.approx(ft)


def test_forward_transfer_needs_a_stream_with_single_tasks():
    with pytest.raises(ConfigError, match="single_task"):
        run(
            RunSpec(
                stream="split-digits",
                agent="naive",
                agent_options={"epochs": 1, "hidden": [8]},
                forward_transfer_reference=True,
            )
        )
