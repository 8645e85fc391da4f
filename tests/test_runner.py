"""The runner: determinism, the results file, and failing agents."""

from __future__ import annotations

import json

import pytest
import torch

from replaybench.errors import AgentError, ConfigError, DivergenceError, UnknownNameError
from replaybench.results import read_result, write_result
from replaybench.runner import RunSpec, make_agent, make_stream, run

FAST = {"epochs": 1, "hidden": [32], "batch_size": 64}


@pytest.fixture(scope="module")
def digits():
    return make_stream("split-digits")


def test_same_spec_and_seed_give_the_same_R(digits):
    spec = RunSpec(stream="split-digits", agent="er", seed=3, agent_options={**FAST, "memory_size": 50})
    assert run(spec, stream=digits).R == run(spec, stream=digits).R


def test_different_seeds_give_different_R(digits):
    a = run(RunSpec(stream="split-digits", agent="naive", seed=0, agent_options=FAST), stream=digits)
    b = run(RunSpec(stream="split-digits", agent="naive", seed=1, agent_options=FAST), stream=digits)
    assert a.R != b.R


def test_result_has_every_promised_key_and_round_trips(digits, tmp_path):
    result = run(RunSpec(stream="split-digits", agent="naive", seed=0, agent_options=FAST), stream=digits)
    path = write_result(result, tmp_path)
    data = json.loads(path.read_text())
    assert set(data) == {"schema", "spec", "R", "baseline", "metrics", "costs", "provenance"}
    assert len(data["R"]) == 5 and all(len(row) == 5 for row in data["R"])
    assert len(data["baseline"]) == 5
    prov = data["provenance"]
    for key in (
        "replaybench_version",
        "git_commit",
        "stream_fingerprint",
        "config",
        "seed",
        "torch_version",
        "hardware",
    ):
        assert key in prov
    assert prov["stream_fingerprint"] == digits.fingerprint
    assert prov["config"]["hidden"] == [32]
    assert path.with_suffix(".png").stat().st_size > 0
    assert read_result(path).R == result.R
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_untrained_baseline_is_near_chance_and_training_learns(digits):
    result = run(
        RunSpec(stream="split-digits", agent="naive", seed=0, agent_options={**FAST, "epochs": 10}), stream=digits
    )
    assert max(result.baseline) < 0.8  # an untrained net is not already good at every task
    assert result.metrics["plasticity"] > 0.9  # each 2-class task is learned when current


def test_ewc_penalty_equals_sum_of_per_experience_quadratics(digits):
    agent = make_agent("ewc", digits, seed=0, options={**FAST, "fisher_samples": 64})
    fishers, anchors = [], []
    estimate = agent._fisher_diagonal
    agent._fisher_diagonal = lambda exp: fishers.append(estimate(exp)) or fishers[-1]
    for exp in digits.experiences[:2]:
        agent.learn(exp)
        anchors.append((fishers[-1], {n: p.detach().clone() for n, p in agent.network.named_parameters()}))
    # Re-derive the penalty from the stored sums and compare with the explicit formula at shifted weights.
    with torch.no_grad():
        for p in agent.network.parameters():
            p.add_(0.01)
    params = dict(agent.network.named_parameters())
    compact = agent.extra_loss(None, None, None)
    explicit = (
        0.5
        * agent.config.ewc_lambda
        * sum((fisher[n] * (params[n] - anchor[n]) ** 2).sum() for fisher, anchor in anchors for n in params)
    )
    assert compact.item() == pytest.approx(explicit.item(), rel=1e-5)
    assert compact.item() > 0


class RaisingAgent:
    kinds = frozenset({"supervised"})

    from dataclasses import dataclass as _dc

    from replaybench.params import Config as _Config

    @_dc(frozen=True)
    class Config(_Config):
        pass

    def __init__(self, *, stream, config, seed, device="cpu"):
        self.config = config
        self.n = stream.n_classes

    def learn(self, experience):
        if experience.index == 1:
            raise ValueError("boom")

    def predict(self, x, task_id=None):
        return torch.zeros(len(x), self.n)


def test_an_agent_that_raises_is_reported_with_its_experience(digits):
    with pytest.raises(AgentError, match="ValueError on experience 1: boom"):
        run(RunSpec(stream="split-digits", agent=f"{__file__}:RaisingAgent"), stream=digits)


def test_a_nan_loss_is_a_clear_error(digits):
    with pytest.raises(DivergenceError, match="not finite|became"):
        run(RunSpec(stream="split-digits", agent="naive", agent_options={**FAST, "lr": 1e30}), stream=digits)


def test_unknown_agent_option_names_the_key():
    with pytest.raises(ConfigError, match="Unknown option 'memory_sise'.*Did you mean 'memory_size'"):
        run(RunSpec(stream="split-digits", agent="er", agent_options={"memory_sise": 10}))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="Did you mean 'split-digits'.*Known:"):
        make_stream("split-digit")


class RLOnlyAgent(RaisingAgent):
    kinds = frozenset({"rl"})


def test_kind_mismatch_is_refused(digits):
    with pytest.raises(ConfigError, match="supports \\['rl'\\]"):
        run(RunSpec(stream="split-digits", agent=f"{__file__}:RLOnlyAgent"), stream=digits)


def test_an_online_stream_fixes_one_pass_in_small_batches():
    stream = make_stream("split-digits", online_batch_size=10)
    result = run(
        RunSpec(
            stream="split-digits",
            agent="naive",
            agent_options={"hidden": [16]},
            stream_options={"online_batch_size": 10},
        ),
        stream=stream,
    )
    assert result.provenance["config"]["epochs"] == 1 and result.provenance["config"]["batch_size"] == 10
    with pytest.raises(ConfigError, match="online"):
        run(RunSpec(stream="split-digits", agent="naive", agent_options={"epochs": 3}), stream=stream)


class IdentityEmbedder(RaisingAgent):
    kinds = frozenset({"unsupervised"})

    def learn(self, experience):
        assert experience.train_y is None  # labels never reach an unsupervised agent

    def embed(self, x):
        return x.flatten(1)


def test_secondary_scores_are_kept_beside_R():
    result = run(RunSpec(stream="unsup-split-digits", agent=f"{__file__}:IdentityEmbedder"))
    knn = result.extras["R_knn_accuracy"]
    assert len(knn) == 5 and all(len(row) == 5 for row in knn)
    assert min(min(row) for row in result.R) > 0.85  # raw pixels separate two digits well
    assert min(min(row) for row in knn) > 0.85
