"""Sigprop and EFP run through the real runner on every kind of supervised stream."""

from __future__ import annotations

import pytest

from replaybench.runner import RunSpec, run

AGENTS = {
    "sigprop": "replaybench.agents.forward.sigprop:SigpropAgent",
    "efp": "replaybench.agents.forward.efp:EFPAgent",
}


@pytest.mark.parametrize("stream", ["split-digits", "split-digits-task", "permuted-digits"])
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_runs_on_supervised_streams_and_learns_the_current_experience(agent, stream):
    options = {"hidden": [32], "epochs": 4, "batch_size": 32, "lr": 0.003}
    result = run(RunSpec(stream=stream, agent=AGENTS[agent], seed=0, agent_options=options))
    n = len(result.R)
    assert n == 5 and all(len(row) == n for row in result.R)
    # Right after learning them, the experiences are well above chance (a 10-way output,
    # or 1 in 2 where task-IL restricts the output to the task's classes).
    just_learned = [result.R[i][i] for i in range(n)]
    chance = 0.5 if stream.endswith("-task") else 0.1
    assert sum(just_learned) / n > chance + 0.3, just_learned
