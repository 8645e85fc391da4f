"""Device placement without a GPU: every agent runs on a simulated device and CUDA's rules hold.

The simulated device (``tests/simulated_device.py``) is ``"cpu:0"``: it computes
as the CPU does, but a tensor made without the agent's device is a host
tensor, and mixing it with a device tensor, ``.numpy()`` of a device
tensor, or a CPU generator drawing device tensors raises, as on CUDA. The
first tests show that the check can fail; the last runs every registered
agent through the runner with it and compares R with a plain CPU run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agent_cases import CASES, IDS, tiny_run
from simulated_device import SIMULATED, DeviceMismatch, OnDevice, device_tensors, on_host, simulated_device

# --- the simulator catches what CUDA refuses -------------------------------------------------


def test_a_network_left_on_the_host_is_caught():
    with simulated_device() as device:
        net = torch.nn.Linear(4, 2)  # no device
        with pytest.raises(DeviceMismatch, match="linear"):
            net(torch.zeros(3, 4, device=device))


def test_data_not_moved_to_the_device_is_caught():
    with simulated_device() as device:
        net = torch.nn.Linear(4, 2, device=device)
        with pytest.raises(DeviceMismatch, match="host tensor of shape"):
            net(torch.zeros(3, 4))


def test_a_cpu_generator_drawing_device_tensors_is_caught():
    with simulated_device() as device:
        host_generator = torch.Generator().manual_seed(0)
        with pytest.raises(DeviceMismatch, match="CPU generator"):
            torch.randperm(5, generator=host_generator, device=device)
        with pytest.raises(DeviceMismatch, match="CPU generator"):
            torch.bernoulli(torch.full((3,), 0.5, device=device), generator=host_generator)
        device_generator = torch.Generator(device=device).manual_seed(0)
        assert isinstance(torch.rand(3, generator=device_generator, device=device), OnDevice)


def test_numpy_of_a_device_tensor_and_a_device_result_into_a_host_scalar_are_caught():
    with simulated_device() as device:
        x = torch.ones(3, device=device)
        with pytest.raises(DeviceMismatch, match="numpy"):
            x.numpy()
        total = torch.zeros(())
        with pytest.raises(DeviceMismatch, match="host tensor"):
            total += x.sum()
        assert x.cpu().numpy().tolist() == [1.0, 1.0, 1.0]


def test_what_cuda_allows_runs_with_the_cpu_numbers():
    def train(device: str) -> list[float]:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        for _ in range(3):
            order = torch.randperm(16, generator=generator)  # sampled on the host, moved after
            loss = torch.nn.functional.cross_entropy(net(x[order].to(device)), y[order].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scalar = torch.tensor(2.0)  # a host scalar is allowed as an input
        return (net(x.to(device)) * scalar).detach().cpu().flatten().tolist()

    plain = train("cpu")
    with simulated_device() as device:
        simulated = train(device)
    assert simulated == plain


# --- every agent ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_every_agent_keeps_to_its_device(name, options):
    with simulated_device() as device:
        simulated = tiny_run(name, options, device, prepare=on_host)
        assert device_tensors() > 0, "nothing was put on the device: the agent ignores `device`"
    plain = tiny_run(name, options, "cpu")
    # The simulated device computes on the CPU: a difference is a code path that depends on the device name.
    np.testing.assert_array_equal(np.array(simulated.R), np.array(plain.R))
    assert simulated.spec["device"] == SIMULATED
