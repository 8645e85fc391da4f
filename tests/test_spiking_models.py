"""The clock, batching semantics, the networks and their readouts."""

from __future__ import annotations

import pytest
import torch

from replaybench.spiking.encoding import poisson
from replaybench.spiking.learning import PostPre, STDPParams
from replaybench.spiking.models import (
    DiehlCookConfig,
    LocalSNNConfig,
    PresentationConfig,
    build_diehl_cook,
    build_local_snn,
)
from replaybench.spiking.network import Network, SpikeCounter, VoltageRecorder
from replaybench.spiking.nodes import InputNodes, LIFNodes, LIFParams
from replaybench.spiking.readout import (
    ClassRates,
    NGramScores,
    all_activity,
    assign_labels,
    firing_orders,
    proportion_weighting,
)
from replaybench.spiking.topology import DenseConnection
from replaybench.streams.datasets import load_mnist5k


@pytest.fixture(scope="module")
def mnist():
    return load_mnist5k()


def test_connections_carry_the_previous_steps_spikes():
    net = Network()
    x = net.add_layer("X", InputNodes(shape=(1,)))
    y = net.add_layer("Y", LIFNodes(shape=(1,), params=LIFParams(tau_m=1e9, refractory=0.0)))
    net.add_connection("X", "Y", DenseConnection(source=x, target=y, weight=torch.full((1, 1), 100.0)))
    net.add_monitor("v", VoltageRecorder(y))
    inputs = torch.zeros(4, 1, 1, dtype=torch.bool)
    inputs[0] = True
    net.run({"X": inputs}, learning=False)
    # The input spike of step 0 reaches Y at step 1, which spikes and resets.
    assert net.monitors["v"].voltages[:, 0, 0].tolist() == [-65.0, -60.0, -60.0, -60.0]


def _dc(reduction="sum", theta_plus=0.05, n=20, seed=0, one_spike=False):
    config = DiehlCookConfig(
        n_neurons=n, one_spike=one_spike, theta_plus=theta_plus, reduction=reduction, inh_strength=120.0
    )
    return build_diehl_cook((1, 8, 8), config, seed=seed, presentation=PresentationConfig(time_steps=60))


def test_samples_in_a_batch_do_not_interact_without_learning():
    model = _dc()
    spikes = poisson(torch.rand(5, 64), time_steps=60, generator=torch.Generator().manual_seed(0))
    model.network.run({"X": spikes}, learning=False)
    batched = model.network.monitors["counts"].counts.clone()
    assert batched.sum() > 0
    for b in range(5):
        model.network.run({"X": spikes[:, b : b + 1]}, learning=False)
        torch.testing.assert_close(model.network.monitors["counts"].counts[0], batched[b])


@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_mean_and_max_over_identical_samples_learn_like_one_sample(reduction):
    spikes = poisson(torch.rand(1, 64), time_steps=60, generator=torch.Generator().manual_seed(1))
    single, batched = _dc(reduction, theta_plus=0.0), _dc(reduction, theta_plus=0.0)
    single.network.run({"X": spikes}, learning=True)
    batched.network.run({"X": spikes.expand(-1, 6, -1)}, learning=True)
    w1, w6 = single.network.connections["X->Ae"].weight, batched.network.connections["X->Ae"].weight
    assert not torch.equal(w1, _dc().network.connections["X->Ae"].weight)  # it did learn
    torch.testing.assert_close(w6, w1)


def test_learning_keeps_weights_bounded_and_normalised():
    model = _dc()
    before = model.network.connections["X->Ae"].weight.clone()
    model.present(torch.rand(8, 1, 8, 8), learning=True)
    w = model.network.connections["X->Ae"].weight
    assert not torch.equal(w, before)
    assert w.min() >= 0
    torch.testing.assert_close(w.sum(0), torch.full((20,), 6.4))  # 0.1 x 64 inputs
    theta = model.network.layers["Ae"].theta
    assert theta.sum() > 0
    model.present(torch.rand(8, 1, 8, 8), learning=False)
    assert torch.equal(model.network.connections["X->Ae"].weight, w)
    assert torch.equal(model.network.layers["Ae"].theta, theta)


def test_label_assignment_and_votes():
    counts = torch.tensor([[5.0, 0.0, 1.0], [0.0, 4.0, 1.0], [4.0, 0.0, 0.0], [0.0, 6.0, 2.0]])
    rates = ClassRates(3, 2)
    rates.add(counts, torch.tensor([0, 1, 0, 1]))
    assignments, proportions = assign_labels(rates.rates())
    assert assignments.tolist() == [0, 1, 1]
    torch.testing.assert_close(proportions[2], torch.tensor([0.5 / 2, 1.5 / 2]))
    probe = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 2.0]])
    assert all_activity(probe, assignments, 2).argmax(1).tolist() == [0, 1]
    torch.testing.assert_close(
        proportion_weighting(probe, assignments, proportions, 2),
        torch.tensor([[3.0, 0.0], [0.0, (2.0 + 2.0 * 0.75) / 2]]),
    )


def test_ngram_scores_follow_firing_order():
    spikes = torch.zeros(4, 2, 3, dtype=torch.bool)  # [T, B, n]
    spikes[0, 0, 2], spikes[1, 0, 0], spikes[3, 0, 1] = True, True, True  # sample 0: 2, 0, 1
    spikes[0, 1, 1], spikes[2, 1, 0] = True, True  # sample 1: 1, 0
    sample, key = firing_orders(spikes, 2)
    assert sample.tolist() == [0, 0, 1]
    assert key.tolist() == [2 + 0 * 3, 0 + 1 * 3, 1 + 0 * 3]
    grams = NGramScores(2, 2)
    grams.add(spikes, torch.tensor([0, 1]))
    assert grams.scores(spikes).tolist() == [[2.0, 0.0], [0.0, 1.0]]
    reversed_order = spikes.flip(0)  # sample 0 fires 1, 0, 2: only (1, 0) is known, from class 1
    assert grams.scores(reversed_order)[0].tolist() == [0.0, 1.0]


def _accuracy(model, rates, x, y):
    assignments, proportions = assign_labels(rates.rates())
    counts = model.present(x, learning=False).counts
    return (proportion_weighting(counts, assignments, proportions, 10).argmax(1) == y).float().mean().item()


def test_diehl_cook_learns_digits_far_above_its_untrained_self(mnist):
    """Competitive STDP forms digit prototypes (Diehl & Cook 2015), here on digits 0-3."""
    train, test = (mnist.train_y < 4).nonzero().squeeze(1), (mnist.test_y < 4).nonzero().squeeze(1)
    order = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:400]]
    x, y = mnist.train_x[order], mnist.train_y[order]  # the split is sorted by class
    test_x, test_y = mnist.test_x[test[::2]], mnist.test_y[test[::2]]
    config = DiehlCookConfig(n_neurons=30, inh_strength=120.0)
    results = {}
    for learning in (True, False):
        model = build_diehl_cook((1, 28, 28), config, seed=0, presentation=PresentationConfig(time_steps=64))
        rates = ClassRates(30, 10)
        for first in range(0, len(x), 8):
            out = model.present(x[first : first + 8], learning=learning)
            rates.add(out.counts, y[first : first + 8])
        results[learning] = _accuracy(model, rates, test_x, test_y)
    assert results[True] >= 0.8, results
    assert results[True] - results[False] >= 0.3, results


def test_lc_snn_has_the_papers_synapse_count_and_learns(mnist):
    model = build_local_snn(
        (1, 28, 28),
        LocalSNNConfig(n_filters=25),
        seed=0,
        presentation=PresentationConfig(time_steps=60, max_rate_hz=127.5),
    )
    assert model.n_outputs == 225 and model.plastic_synapses == 32_400  # Saunders et al. 2019, Table 1
    conn = model.network.connections["X->Y"]
    before = conn.weight.clone()
    out = model.present(mnist.train_x[:16], learning=True, record=True)
    assert out.counts.shape == (16, 225) and out.counts.sum() > 0
    assert out.spikes.shape == (60, 16, 225)
    assert not torch.equal(conn.weight, before)
    torch.testing.assert_close(conn.weight.sum(1), torch.full((9, 25), 0.2 * 144))


def test_conv_snn_learns_shared_filters(mnist):
    config = LocalSNNConfig(n_filters=8, kernel_size=16, stride=4, crop=None, inh_strength=100.0)
    config = LocalSNNConfig.from_dict({**config.to_dict(), "shared_weights": True})
    model = build_local_snn((1, 28, 28), config, seed=0, presentation=PresentationConfig(time_steps=40))
    assert model.plastic_synapses == 8 * 16 * 16
    before = model.network.connections["X->Y"].weight.clone()
    out = model.present(mnist.train_x[:8], learning=True)
    assert out.counts.shape == (8, 8 * 4 * 4) and out.counts.sum() > 0
    assert not torch.equal(model.network.connections["X->Y"].weight, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_without_learning():
    spikes = poisson(torch.rand(4, 64), time_steps=60, generator=torch.Generator().manual_seed(0))
    cpu = _dc()
    cpu.network.run({"X": spikes}, learning=True)
    gpu = _dc()
    gpu.network.to("cuda")
    gpu.network.run({"X": spikes.cuda()}, learning=True)
    torch.testing.assert_close(
        gpu.network.connections["X->Ae"].weight.cpu(), cpu.network.connections["X->Ae"].weight, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(gpu.network.monitors["counts"].counts.cpu(), cpu.network.monitors["counts"].counts)


def test_spike_counter_counts_each_sample():
    net = Network()
    x = net.add_layer("X", InputNodes(shape=(3,)))
    net.add_monitor("c", SpikeCounter(x))
    spikes = torch.rand(10, 2, 3) < 0.5
    net.run({"X": spikes}, learning=False)
    torch.testing.assert_close(net.monitors["c"].counts, spikes.float().sum(0))
    assert PostPre(params=STDPParams()).reduction == "sum"


@pytest.mark.parametrize(("reduction", "one_spike"), [("sum", False), ("max", False), ("mean", True)])
def test_fused_cpu_kernels_match_the_tensor_path(reduction, one_spike, monkeypatch):
    from replaybench.spiking import _cpu_kernels

    if _cpu_kernels.library() is None:
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(2)
    first = poisson(torch.rand(4, 64, generator=g), time_steps=60, generator=g)
    # A second run (state reset, weights renormalised) must not reuse the first run's event
    # lists or precomputed current.
    second = first.flip(0)

    def simulate():
        model = _dc(reduction, one_spike=one_spike)
        net = model.network
        net.run({"X": first}, learning=True)
        state = {
            "counts": net.monitors["counts"].counts.clone(),
            "weight": net.connections["X->Ae"].weight.clone(),
            "theta": net.layers["Ae"].theta.clone(),
            "v": net.layers["Ae"].v.clone(),
        }
        net.run({"X": second}, learning=True)
        state.update(counts2=net.monitors["counts"].counts.clone(), weight2=net.connections["X->Ae"].weight.clone())
        return state, net.connections["X->Ae"]._kernels is not None

    fused, used_kernels = simulate()
    monkeypatch.setattr(_cpu_kernels, "_LIB", [None])
    plain, used_tensors = simulate()
    assert used_kernels and not used_tensors
    assert torch.equal(second, first.flip(0))  # the caller's spikes are not modified
    assert fused["counts"].sum() >= 10 and fused["counts2"].sum() >= 5
    for key in ("counts", "weight", "theta", "v", "counts2", "weight2"):
        torch.testing.assert_close(fused[key], plain[key], msg=lambda m, key=key: f"{key}: {m}")
