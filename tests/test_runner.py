"""The runner: determinism, the results file, and failing agents."""

from __future__ import annotations

import json
import math

import pytest
import torch

from replaybench.errors import AgentError, ConfigError, DivergenceError, UnknownNameError
from replaybench.metrics import NonFiniteScoreError
from replaybench.results import RunResult, read_result, result_from_json, result_json, write_result
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


UNDEFINED_FOR_ONE_EXPERIENCE = ("forgetting_max", "forgetting_first_last", "bwt", "fwt")


def test_one_experience_writes_null_forgetting_and_transfer(tmp_path):
    one = {"n_experiences": 1}
    spec = RunSpec(stream="split-digits", agent="naive", agent_options=FAST, stream_options=one)
    result = run(spec, stream=make_stream("split-digits", **one))
    assert all(result.metrics[k] is None for k in UNDEFINED_FOR_ONE_EXPERIENCE)
    assert result.metrics["acc"] == pytest.approx(result.R[0][0])
    text = write_result(result, tmp_path).read_text()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert all(data["metrics"][k] is None for k in UNDEFINED_FOR_ONE_EXPERIENCE)
    assert '"bwt": null' in text and "non_finite" not in data  # undefined, not a NaN put back on reading
    back = read_result(next(tmp_path.glob("*.json")))
    assert all(back.metrics[k] is None for k in UNDEFINED_FOR_ONE_EXPERIENCE)
    assert back.metrics == result.metrics


def test_fwt_follows_the_streams_scenario(digits):
    class_il = run(RunSpec(stream="split-digits", agent="naive", agent_options=FAST), stream=digits)
    assert digits.scenario == "class-il" and class_il.metrics["fwt"] is None
    assert isinstance(class_il.metrics["bwt"], float)
    two = {"n_experiences": 2}
    permuted = make_stream("permuted-digits", **two)
    spec = RunSpec(stream="permuted-digits", agent="naive", agent_options=FAST, stream_options=two)
    domain_il = run(spec, stream=permuted)
    assert permuted.scenario == "domain-il"
    r, b = domain_il.R, domain_il.baseline
    assert domain_il.metrics["fwt"] == pytest.approx(r[0][1] - b[1])


def test_a_nan_score_is_refused_naming_the_cell(digits, monkeypatch):
    import replaybench.runner as runner

    real = runner.evaluate_scores
    calls = {"n": 0}

    def nan_on_experience_0_after_experience_1(agent, experience, stream):
        calls["n"] += 1
        scores = real(agent, experience, stream)
        # Call order: the baseline's 5 cells, then 5 per row of R; R[1][0] is call 11.
        return {**scores, "score": float("nan")} if calls["n"] == 11 else scores

    monkeypatch.setattr(runner, "evaluate_scores", nan_on_experience_0_after_experience_1)
    with pytest.raises(NonFiniteScoreError, match=r"^R\[1\]\[0\] = nan \(agent 'naive' evaluated after experience 1\)"):
        run(RunSpec(stream="split-digits", agent="naive", agent_options=FAST), stream=digits)
    assert calls["n"] == 15  # refused as soon as row 1 was scored, before experience 2 was learned


def test_results_json_keeps_undefined_apart_from_non_finite():
    result = RunResult(
        spec={"stream": "s", "agent": "a", "seed": 0},
        R=[[0.5]],
        baseline=[0.1],
        metrics={"acc": 0.5, "bwt": None, "fwt": None, "forward_transfer_cw": None},
        costs={},
        provenance={},
        extras={"forward_transfer_per_task": [float("nan"), 0.2]},
    )
    text = result_json(result)
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data["metrics"] == {"acc": 0.5, "bwt": None, "fwt": None, "forward_transfer_cw": None}
    assert data["non_finite"] == {"extras.forward_transfer_per_task.0": "nan"}
    back = result_from_json(text)
    assert back.metrics == result.metrics
    per_task = back.extras["forward_transfer_per_task"]
    assert math.isnan(per_task[0]) and per_task[1] == 0.2  # a NaN is put back; an undefined metric stays None


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
