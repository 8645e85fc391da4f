"""The two SNN agents on a real split stream (split mnist5k, a few images per class)."""

from __future__ import annotations

import pytest
import torch

from replaybench.agents.snn import SNNClassifier, SNNConfig, SNNFeatures
from replaybench.errors import ConfigError
from replaybench.evaluation import evaluate
from replaybench.streams.vision import make_split


@pytest.fixture(scope="module")
def stream():
    return make_split(name="split-mnist5k-tiny", dataset="mnist5k", n_experiences=5, train_per_class=60)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def test_classifier_reads_out_stdp_features_and_keeps_old_classes(stream):
    config = SNNConfig(n_neurons=30, time_steps=64, batch_size=8)
    agent = SNNClassifier(stream=stream, config=config, seed=0)
    first, second = stream.experiences[0], stream.experiences[1]
    stats = agent.learn(first)
    assert stats["plastic_synapses"] == 784 * 30 and stats["mean_spikes_per_sample"] > 1
    logits = agent.predict(first.test_x)
    assert logits.shape == (len(first.test_x), stream.n_classes)
    assert _accuracy(logits, first.test_y) >= 0.9  # digits 0 and 1
    assert evaluate(agent, first, stream) >= 0.9  # as the runner scores it
    agent.learn(second)
    assert _accuracy(agent.predict(second.test_x), second.test_y) >= 0.6  # digits 2, 3 among 4 seen classes
    # Rates accumulate over experiences, so the old classes can still be predicted.
    assert _accuracy(agent.predict(first.test_x), first.test_y) >= 0.5


def test_features_embed_spike_counts_that_separate_classes(stream):
    agent = SNNFeatures(stream=stream, config=SNNConfig(n_neurons=30, time_steps=64, batch_size=8), seed=0)
    assert agent.kinds == frozenset({"unsupervised"})
    exp = stream.experiences[0]
    agent.learn(exp)
    train, test = agent.embed(exp.train_x), agent.embed(exp.test_x)
    assert train.shape == (len(exp.train_x), 30) and (test >= 0).all()
    assert torch.equal(test, test.round())  # counts
    centroids = torch.stack([train[exp.train_y == c].mean(0) for c in exp.classes])
    nearest = torch.cdist(test, centroids).argmin(1)
    assert _accuracy(torch.nn.functional.one_hot(nearest, 2).float(), exp.test_y - min(exp.classes)) >= 0.9


def test_lc_snn_classifier_with_ngram_readout(stream):
    config = SNNConfig(architecture="lc-snn", n_filters=8, time_steps=40, batch_size=16, readout="ngram")
    agent = SNNClassifier(stream=stream, config=config, seed=0)
    exp = stream.experiences[0]
    agent.learn(exp)
    logits = agent.predict(exp.test_x[:50])
    assert logits.shape == (50, stream.n_classes)
    assert _accuracy(logits, exp.test_y[:50]) >= 0.7


def test_bad_configs_fail_at_construction(stream):
    with pytest.raises(ConfigError, match="'ngram' readout needs"):
        SNNClassifier(stream=stream, config=SNNConfig(readout="ngram"), seed=0)
    with pytest.raises(ConfigError, match="Did you mean 'n_neurons'"):
        SNNConfig.from_dict({"n_neuron": 10})
    with pytest.raises(ConfigError, match="'reduction' parameter of SNNConfig"):
        SNNConfig(reduction="median")


def test_relabel_drops_the_record_of_neurons_that_learned_since(stream):
    config = SNNConfig(n_neurons=30, time_steps=64, batch_size=8, epochs=2, assignment="relabel")
    agent = SNNClassifier(stream=stream, config=config, seed=0)
    first, second = stream.experiences[0], stream.experiences[1]
    agent.learn(first)
    before = agent.rates.rates().clone()
    assert before[:, 2:].eq(0).all() and before[:, :2].sum() > 0
    stats = agent.learn(second)
    after = agent.rates.rates()
    spiked = after[:, 2:4].sum(1) > 0  # neurons that answered digits 2 and 3 in the last epoch
    assert stats["neurons_spiked"] >= spiked.sum().item() > 0
    # A neuron that spiked while learning digits 2 and 3 keeps no evidence for 0 and 1 ...
    assert after[spiked, :2].eq(0).all()
    # ... and one that never spiked keeps its record: its weights did not change.
    silent = (after[:, 2:4].sum(1) == 0) & (after[:, :2].sum(1) > 0)
    torch.testing.assert_close(after[silent], before[silent])


def test_last_epoch_assignment_records_only_the_last_epoch(stream):
    exp = stream.experiences[0]
    counts = {}
    for rule in ("accumulate", "last-epoch"):
        config = SNNConfig(n_neurons=20, time_steps=32, batch_size=8, epochs=2, assignment=rule)
        agent = SNNClassifier(stream=stream, config=config, seed=0)
        agent.learn(exp)
        counts[rule] = agent.rates.samples.sum().item()
    assert counts == {"accumulate": 2 * len(exp.train_x), "last-epoch": len(exp.train_x)}


def test_lc_snn_keeps_its_3x3_grid_and_one_spike_on_small_images():
    from replaybench.runner import make_stream

    digits = make_stream("split-digits")
    agent = SNNClassifier(stream=digits, config=SNNConfig(architecture="lc-snn", n_filters=4), seed=0)
    layer = agent.model.network.layers["Y"]
    assert layer.shape == (4, 3, 3)  # kernel 4, stride 2 on 8x8, as kernel 12, stride 4 on 20x20
    assert layer.adaptive.one_spike  # BindsNET's LocallyConnectedNetwork (DiehlAndCookNodes)
    flat = SNNClassifier(stream=digits, config=SNNConfig(architecture="lc-snn", n_filters=4, kernel_size=8), seed=0)
    assert flat.model.network.layers["Y"].shape == (4, 1, 1)
    with pytest.raises(ConfigError, match="'relabel' assignment needs a per-neuron readout"):
        SNNClassifier(
            stream=digits, config=SNNConfig(architecture="lc-snn", readout="ngram", assignment="relabel"), seed=0
        )
