"""EMT's protocol (benchmarks/emt_protocol.py): the task's companion matrix, the spectral match, the curriculum."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from replaybench.agents.sequence import ElmanAgent
from replaybench.streams.sequence_tasks import make_vb_compose

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "emt_protocol.py"
_SPEC = importlib.util.spec_from_file_location("emt_protocol", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
emt = importlib.util.module_from_spec(_SPEC)
sys.modules["emt_protocol"] = emt
_SPEC.loader.exec_module(emt)


@pytest.mark.parametrize("task", ["T1", "T2", "T3", "T4"])
def test_companion_matrix_runs_the_task_recurrence(task: str) -> None:
    """Φ applied to the last s inputs gives every output of the output phase."""
    x, y, _ = emt.held_out(task, 12, "test", n=5)
    phi = emt.companion_matrix(task)
    state = x[:, : emt.S].reshape(5, -1)
    for k in range(12):
        state = state @ phi.T
        torch.testing.assert_close(state[:, -emt.D :], y[:, emt.S + k])


def test_spectral_error_is_zero_on_phi_and_measures_a_rotation_in_degrees() -> None:
    phi = emt.companion_matrix("T3")
    target = np.linalg.eigvals(phi.double().numpy())
    assert (np.abs(target) < 1e-6).any(), "T3's Φ has zero eigenvalues, which the match must skip"
    exact = emt.spectral_error(phi, target)
    assert exact["angle_deg"] == pytest.approx(0.0, abs=1e-6)
    assert exact["modulus"] == pytest.approx(1.0, abs=1e-6)
    rotated = emt.spectral_error(phi, target * np.exp(1j * np.deg2rad(2.0)))
    assert rotated["angle_deg"] == pytest.approx(2.0, abs=1e-3)
    assert emt.spectral_error(0.5 * phi, target)["modulus"] == pytest.approx(0.5, abs=1e-6)


def test_held_out_splits_are_fixed_and_apart() -> None:
    validation, test = emt.held_out("T2", 10, "validation", n=8), emt.held_out("T2", 10, "test", n=8)
    torch.testing.assert_close(validation[0], emt.held_out("T2", 10, "validation", n=8)[0])
    assert not torch.equal(validation[0], test[0])


def test_curriculum_moves_on_as_the_wave_learns_and_runs_are_deterministic() -> None:
    first = emt.train_with_curriculum("wave-lbc-s8", "T1", lr=3e-2, l2=0.0, seed=0, updates=250)
    again = emt.train_with_curriculum("wave-lbc-s8", "T1", lr=3e-2, l2=0.0, seed=0, updates=250)
    assert first["passed_at"] == again["passed_at"] and first["test_accuracy"] == again["test_accuracy"]
    passed = [first["passed_at"][str(h)] for h in emt.CURRICULUM if str(h) in first["passed_at"]]
    assert len(passed) >= 2 and passed == sorted(passed)
    assert first["horizon_reached"] > emt.CURRICULUM[0]
    assert first["test_accuracy"] > 0.7  # chance is 0.5


def test_spectra_are_tracked_from_init_to_the_end() -> None:
    row = emt.train_with_curriculum("elman-32", "T1", lr=1e-3, l2=0.0, seed=0, updates=10, track=True)
    assert [s["update"] for s in row["spectra"]] == [0, 10]
    assert row["spectra"][0]["w_hh"]["angle_deg"] > 0.1  # an untrained W_hh is not Φ


def test_train_batch_returns_the_outputs_before_its_update() -> None:
    stream = make_vb_compose(d=8, s=8, horizon=4, n_train=16, n_test=4, tasks=("T1",))
    agent = ElmanAgent(stream=stream, config=ElmanAgent.Config(hidden=16), seed=0)
    experience = stream.experiences[0]
    x, y, mask = experience.train_x, experience.train_y, experience.info["output_mask"]
    before = agent.predict(x)
    loss, outputs = agent.train_batch(x, y, mask)
    torch.testing.assert_close(outputs, before)
    assert loss == pytest.approx(torch.nn.functional.mse_loss(before[:, mask], y[:, mask]).item(), rel=1e-5)
    assert agent.updates_done == 1 and not torch.equal(agent.predict(x), before)
