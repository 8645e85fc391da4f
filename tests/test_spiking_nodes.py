"""Neuron dynamics, encoders and construction-time errors of the spiking simulator."""

from __future__ import annotations

import math

import pytest
import torch

from replaybench.errors import ConfigError
from replaybench.spiking.encoding import bernoulli, expected_rate, poisson
from replaybench.spiking.network import Network
from replaybench.spiking.nodes import AdaptiveLIFNodes, AdaptiveParams, InputNodes, LIFNodes, LIFParams
from replaybench.spiking.topology import DenseConnection, LocalConnection2d


def lif(shape=(4,), batch=2, **params) -> LIFNodes:
    nodes = LIFNodes(shape=shape, params=LIFParams(**params))
    nodes.configure(dt=1.0, batch_size=batch)
    return nodes


def test_subthreshold_voltage_follows_the_discrete_leak():
    nodes = lif(rest=-65.0, thresh=0.0, tau_m=20.0)
    current, decay = 0.5, math.exp(-1.0 / 20.0)
    for k in range(1, 31):
        nodes.step(torch.full((2, 4), current))
        expected = -65.0 + current * (1 - decay**k) / (1 - decay)
        torch.testing.assert_close(nodes.v, torch.full((2, 4), expected))


def test_spike_reset_and_refractory_period():
    nodes = lif(shape=(1,), batch=1, rest=-65.0, reset=-70.0, thresh=-60.0, tau_m=1e9, refractory=3.0)
    spikes = [bool(nodes.step(torch.full((1, 1), 2.0))) for _ in range(12)]
    # 5 mV at 2 mV/step: spike at step 2; steps 3-5 refractory; 10 mV from reset by step 10.
    assert [i for i, s in enumerate(spikes) if s] == [2, 10]
    assert nodes.v.item() == -70.0


def test_trace_decays_and_is_set_not_added():
    nodes = lif(shape=(1,), batch=1, reset=-70.0, thresh=-64.0, tau_m=1e9, tau_trace=10.0, refractory=0.0)
    nodes.step(torch.full((1, 1), 5.0))
    assert nodes.x.item() == 1.0
    nodes.step(torch.full((1, 1), 7.0))  # spikes again: trace set to 1, not 1 + decay
    assert nodes.x.item() == 1.0
    nodes.step(None)
    torch.testing.assert_close(nodes.x, torch.tensor([[math.exp(-0.1)]]))


def test_adaptive_threshold_sums_spikes_over_the_batch_and_freezes_without_learning():
    nodes = AdaptiveLIFNodes(
        shape=(3,), params=LIFParams(tau_m=1e9, refractory=0.0), adaptive=AdaptiveParams(theta_plus=0.5, tau_theta=1e12)
    )
    nodes.configure(dt=1.0, batch_size=4)
    drive = torch.zeros(4, 3)
    drive[:, 0] = 20.0  # neuron 0 spikes in all 4 samples
    drive[:2, 1] = 20.0  # neuron 1 in two
    nodes.step(drive)
    torch.testing.assert_close(nodes.theta, torch.tensor([2.0, 1.0, 0.0]))
    nodes.configure(dt=1.0, batch_size=4, learning=False)
    nodes.step(drive * 10)
    torch.testing.assert_close(nodes.theta, torch.tensor([2.0, 1.0, 0.0]))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(
    ("reduction", "expected"), [("sum", [2.0, 1.0, 0.0]), ("mean", [0.5, 0.25, 0.0]), ("max", [0.5, 0.5, 0.0])]
)
def test_adaptive_threshold_reduces_its_increments_over_the_batch_as_configured(
    reduction, expected, fused, monkeypatch
):
    from replaybench.spiking import _cpu_kernels

    if not fused:
        monkeypatch.setattr(_cpu_kernels, "_LIB", [None])
    nodes = AdaptiveLIFNodes(
        shape=(3,),
        params=LIFParams(tau_m=1e9, refractory=0.0),
        adaptive=AdaptiveParams(theta_plus=0.5, tau_theta=1e12, reduction=reduction),
    )
    nodes.configure(dt=1.0, batch_size=4)
    assert (nodes._kernels is not None) == (fused and _cpu_kernels.library() is not None)
    drive = torch.zeros(4, 3)
    drive[:, 0] = 20.0  # neuron 0 spikes in all 4 samples, neuron 1 in two
    drive[:2, 1] = 20.0
    nodes.step(drive)
    torch.testing.assert_close(nodes.theta, torch.tensor(expected))


@pytest.mark.parametrize("fused", [True, False])
def test_one_spike_keeps_a_single_spike_per_sample_but_resets_all(fused, monkeypatch):
    from replaybench.spiking import _cpu_kernels

    if not fused:
        monkeypatch.setattr(_cpu_kernels, "_LIB", [None])
    nodes = AdaptiveLIFNodes(
        shape=(5,),
        params=LIFParams(),
        adaptive=AdaptiveParams(one_spike=True),
        generator=torch.Generator().manual_seed(0),
    )
    nodes.configure(dt=1.0, batch_size=400)
    drive = torch.full((400, 5), 50.0)
    drive[0, 1:] = 0.0  # sample 0: only neuron 0 crosses
    s = nodes.step(drive)
    assert s.sum(1).tolist() == [1] * 400 and s[0, 0]
    assert (nodes.v == -60.0).sum() == 1 + 399 * 5
    assert nodes.x.sum() == 400  # the trace follows the emitted spike only
    # Uniform among the crossing neurons (BindsNET draws with multinomial).
    frequencies = s[1:].float().mean(0)
    assert ((frequencies - 0.2).abs() < 0.07).all(), frequencies
    torch.testing.assert_close(nodes.theta, torch.full((5,), 0.05 * 399) + torch.tensor([0.05, 0, 0, 0, 0]))
    if fused:
        reference = s.clone()
        monkeypatch.setattr(_cpu_kernels, "_LIB", [None])
        plain = AdaptiveLIFNodes(
            shape=(5,),
            params=LIFParams(),
            adaptive=AdaptiveParams(one_spike=True),
            generator=torch.Generator().manual_seed(0),
        )
        plain.configure(dt=1.0, batch_size=400)
        assert torch.equal(plain.step(drive), reference)


def test_poisson_rate_matches_the_process_and_is_seeded():
    x = torch.full((2000,), 0.5)
    g = torch.Generator().manual_seed(1)
    spikes = poisson(x, time_steps=200, max_rate_hz=100.0, generator=g)
    assert spikes.shape == (200, 2000) and spikes.dtype == torch.bool
    assert spikes.float().mean().item() == pytest.approx(expected_rate(0.5, max_rate_hz=100.0), rel=0.02)
    again = poisson(x, time_steps=200, max_rate_hz=100.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(spikes, again)
    b = bernoulli(x, time_steps=200, max_prob=0.2, generator=g)
    assert b.float().mean().item() == pytest.approx(0.1, rel=0.03)


@pytest.mark.parametrize("bad", [torch.full((3,), 1.5), torch.full((3,), -0.1)])
def test_encoders_refuse_intensities_outside_unit_interval(bad):
    with pytest.raises(ConfigError, match=r"intensities in \[0, 1\]"):
        poisson(bad, time_steps=5)


def test_negative_time_constants_fail_at_construction():
    with pytest.raises(ConfigError, match="'tau_m' parameter of LIFParams must be a float in the range \\(0, inf\\)"):
        LIFParams(tau_m=-5.0)
    with pytest.raises(ConfigError, match="tau_theta"):
        AdaptiveParams(tau_theta=-1.0)
    with pytest.raises(ConfigError, match="tau_trace"):
        InputNodes(shape=(3,), tau_trace=-20.0)
    with pytest.raises(ConfigError, match="'reduction' parameter of AdaptiveParams"):
        AdaptiveParams(reduction="median")


@pytest.mark.parametrize("dt", [0.0, -1.0])
def test_non_positive_dt_fails_at_construction(dt):
    with pytest.raises(ConfigError, match="The 'dt' parameter of Network must be a float in the range \\(0, inf\\)"):
        Network(dt=dt)
    with pytest.raises(ConfigError, match="'dt' parameter of poisson"):
        poisson(torch.zeros(2), time_steps=3, dt=dt)


def test_shape_mismatches_fail_at_construction():
    x, y = InputNodes(shape=(6,)), lif(shape=(3,))
    with pytest.raises(ConfigError, match=r"must have shape \(6, 3\).*Got \(3, 6\) instead"):
        DenseConnection(source=x, target=y, weight=torch.rand(3, 6))
    image = InputNodes(shape=(1, 10, 10))
    wrong_target = lif(shape=(4, 3, 3))  # kernel 4, stride 2 gives 4x4 locations
    with pytest.raises(ConfigError, match=r"target of shape \(4, 4, 4\)"):
        LocalConnection2d(source=image, target=wrong_target, weight=torch.rand(9, 16, 4), kernel_size=4, stride=2)
    with pytest.raises(ConfigError, match="'shape' parameter of LIFNodes"):
        LIFNodes(shape=(0, 3), params=LIFParams())


def test_network_refuses_inputs_of_the_wrong_shape_before_running():
    net = Network()
    x = net.add_layer("X", InputNodes(shape=(4,)))
    y = net.add_layer("Y", LIFNodes(shape=(2,), params=LIFParams()))
    net.add_connection("X", "Y", DenseConnection(source=x, target=y, weight=torch.rand(4, 2)))
    with pytest.raises(ConfigError, match=r"must have shape \[T, B, 4\]"):
        net.run({"X": torch.zeros(5, 2, 3, dtype=torch.bool)}, learning=False)
    with pytest.raises(ConfigError, match="Unknown source layer 'Z'"):
        net.add_connection("Z", "Y", DenseConnection(source=x, target=y, weight=torch.rand(4, 2)))
