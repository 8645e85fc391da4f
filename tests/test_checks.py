"""Conformance checks: every registered agent, stream and memory passes, and the checks can fail."""

from __future__ import annotations

import argparse

import pytest
import torch

from replaybench.checks import MEMORIES, check_agent, check_memory, check_stream, register_check_command, tiny_stream
from replaybench.cli import main
from replaybench.memories.reservoir import ReservoirBuffer
from replaybench.registry import AGENTS, STREAMS, Spec
from replaybench.runner import make_stream

AGENT_NAMES = [n for n in AGENTS.names() if not n.endswith(":*")] + ["avalanche:Naive"]

SMALLER_STREAMS = {"permuted-fmnist": {"train_per_class": 100}, "rotated-fmnist": {"train_per_class": 100}}
"""Build options for the streams that take seconds to build in full (their 60k-image transforms)."""


def _report_failure(report) -> str:
    return "\n" + report.format()


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_every_registered_agent_passes_check_agent(name):
    report = check_agent(name)
    assert report.ok, _report_failure(report)


@pytest.mark.parametrize("name", STREAMS.names())
def test_every_registered_stream_passes_check_stream(name):
    report = check_stream(name, options=SMALLER_STREAMS.get(name))
    assert report.ok, _report_failure(report)  # missing data is a SKIP, not a failure


@pytest.mark.parametrize("name", sorted(MEMORIES))
def test_every_memory_passes_check_memory(name):
    case = MEMORIES[name]
    report = check_memory(case.factory, items=case.items, name=name)
    assert report.ok, _report_failure(report)
    assert all(passed for _, passed, _ in report.results), _report_failure(report)  # nothing skipped either


# --- agents the checks must catch ---------------------------------------------------------------
AGENT_TEMPLATE = '''
from dataclasses import dataclass
import torch
from torch import nn


@dataclass(frozen=True)
class Config:
    lr: float = 0.1
    hidden: tuple[int, ...] = (32,)


class MyAgent:
    """A README-style third-party agent: a plain frozen dataclass Config and no replaybench base class."""

    kinds = frozenset({"supervised"})
    Config = Config

    def __init__(self, *, stream, config, seed, device="cpu"):
        torch.manual_seed(seed)
        width = 1
        for d in stream.input_shape:
            width *= d
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(width, config.hidden[0]), nn.ReLU(),
                                 nn.Linear(config.hidden[0], stream.n_classes))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr)

    def learn(self, experience):
        loss = nn.functional.cross_entropy(self.net(experience.train_x), experience.train_y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def predict(self, x, task_id=None):
        return self.net(x)
'''

FLAWS = {
    "nondeterministic": (
        "    @torch.no_grad()\n    def predict(self, x, task_id=None):\n        return self.net(x)",
        "    @torch.no_grad()\n    def predict(self, x, task_id=None):\n"
        "        noise = torch.Generator()\n        noise.seed()  # fresh OS entropy on every call\n"
        "        return self.net(x) + torch.randn(len(x), 10, generator=noise)",
    ),
    "wrong_shape": ("        return self.net(x)", "        return self.net(x)[:, :3]"),
    "nan": ("        return self.net(x)", "        return self.net(x) * float('nan')"),
    "no_kinds": ('    kinds = frozenset({"supervised"})\n', ""),
    "wrong_type": ("    lr: float = 0.1", "    lr: float = 'fast'"),
    "bad_stats": ('        return {"loss": loss.item()}', '        return {"loss": loss}'),
    "negative_state_bytes": (
        '        return {"loss": loss.item()}\n',
        '        return {"loss": loss.item()}\n\n    def state_bytes(self):\n        return {"buffer": -1}\n',
    ),
    "nan_epoch_losses": (
        '        return {"loss": loss.item()}\n',
        '        self.last_epoch_losses = [loss.item(), float("nan")]\n        return {"loss": loss.item()}\n',
    ),
}


def _agent_file(tmp_path, flaw: str | None = None) -> str:
    source = AGENT_TEMPLATE
    if flaw is not None:
        old, new = FLAWS[flaw]
        assert old in source
        source = source.replace(old, new)
    path = tmp_path / f"agent_{flaw or 'ok'}.py"
    path.write_text(source)
    return f"{path}:MyAgent"


def _results(report) -> dict[str, tuple[bool | None, str]]:
    return {name: (passed, detail) for name, passed, detail in report.results}


def test_a_readme_style_third_party_agent_passes(tmp_path):
    report = check_agent(_agent_file(tmp_path))
    assert report.ok, _report_failure(report)
    assert _results(report)["config"] == (True, "Config round-trips")


@pytest.mark.parametrize(
    ("flaw", "check", "message"),
    [
        ("nondeterministic", "determinism", "a second agent with seed 0 answered differently"),
        ("wrong_shape", "predict", "predict returned shape (8, 3) on experience 0; expected [8, 10]"),
        ("nan", "predict", "predict returned NaN or +inf on experience 0"),
        ("no_kinds", "kinds", "must declare the experience kinds it supports"),
        ("wrong_type", "config", "The 'lr' parameter of agent"),
        ("bad_stats", "learn", "learn's statistics hold 'loss'"),
        ("negative_state_bytes", "hooks", "state_bytes after experience 0 must map str to non-negative ints"),
        ("nan_epoch_losses", "hooks", "last_epoch_losses after experience 0 holds something other than finite"),
    ],
)
def test_a_broken_agent_fails_the_right_check_with_one_line(tmp_path, flaw, check, message):
    report = check_agent(_agent_file(tmp_path, flaw))
    results = _results(report)
    assert not report.ok
    passed, detail = results[check]
    assert passed is False and message in detail, _report_failure(report)
    assert all("\n" not in d for _, _, d in report.results)
    if flaw in ("wrong_type", "no_kinds"):  # nothing is built from a broken declaration
        assert "build" not in results
    if flaw == "wrong_type":
        assert "must be a float. Got 'fast' instead." in detail


# --- streams the checks must catch --------------------------------------------------------------
STREAM_TEMPLATE = """
import dataclasses
import torch
from replaybench.streams.vision import make_split


def make_broken(*, name, flaw, data_dir=None, download=False):
    stream = make_split(name=name, dataset="digits", n_experiences=5)
    first = stream.experiences[0]
    if flaw == "dtype":
        first = dataclasses.replace(first, train_x=first.train_x.double())
    elif flaw == "classes":
        first = dataclasses.replace(first, classes=(0, 2))
    return dataclasses.replace(stream, experiences=(first, *stream.experiences[1:]), _fingerprint=[])
"""


@pytest.fixture
def broken_stream(tmp_path, monkeypatch):
    """Registers ``broken-<flaw>`` for this test only."""
    path = tmp_path / "broken_stream.py"
    path.write_text(STREAM_TEMPLATE)

    def register(flaw: str) -> str:
        name = f"broken-{flaw}"
        monkeypatch.setitem(STREAMS._specs, name, Spec(name, f"{path}:make_broken", {"name": name, "flaw": flaw}))
        return name

    return register


@pytest.mark.parametrize(
    ("flaw", "check", "message"),
    [
        ("dtype", "tensors", "experience 0 train_x is torch.float64; expected float32"),
        ("classes", "labels", "experience 0 declares classes [0, 2] but its training labels are [0, 1]"),
    ],
)
def test_a_broken_stream_fails_the_right_check(broken_stream, flaw, check, message):
    report = check_stream(broken_stream(flaw))
    passed, detail = _results(report)[check]
    assert passed is False and message in detail, _report_failure(report)
    assert _results(report)["fingerprint"][0] is True  # the other checks still ran


def test_missing_data_is_skipped_not_failed():
    report = check_stream("split-cifar100")
    passed, detail = _results(report)["build"]
    if passed is True:
        pytest.skip("CIFAR-100 is on this machine")
    assert passed is None and "data missing" in detail and report.ok


def test_a_tiny_stream_keeps_every_class_and_has_its_own_fingerprint():
    stream = make_stream("split-digits-task")
    tiny = tiny_stream(stream)
    assert tiny.name == "split-digits-task[tiny]" and len(tiny.experiences) == 2
    for small, full in zip(tiny.experiences, stream.experiences):
        assert set(small.train_y.tolist()) == set(full.classes) and len(small.train_x) == 40
        assert set(small.test_y.tolist()) == set(full.classes) and len(small.test_x) == 20
        assert small.task_id == full.task_id
    assert tiny.fingerprint != stream.fingerprint and tiny.fingerprint == tiny_stream(stream).fingerprint
    rl = make_stream("cartpole-conflict")
    tiny_rl = tiny_stream(rl)
    assert [e.step_budget for e in tiny_rl.experiences] == [300, 300]
    assert tiny_rl.experiences[0].info["eval_seeds"] == rl.experiences[0].info["eval_seeds"][:2]
    assert tiny_rl.fingerprint != rl.fingerprint


# --- memories the checks must catch -------------------------------------------------------------
class InventingBuffer(ReservoirBuffer):
    """Samples items it was never given."""

    def sample(self, n, generator=None):
        x, y = super().sample(n, generator)
        return x + 1000, y


class WeightlessBuffer(ReservoirBuffer):
    """Claims to hold no bytes whatever it stores."""

    @property
    def nbytes(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (InventingBuffer, "sample", "of 64 sampled items were never added"),
        (WeightlessBuffer, "nbytes", "nbytes stays 0 as the stored items grow from 0 to 8"),
    ],
)
def test_a_broken_memory_fails_the_right_check(cls, check, message):
    report = check_memory(lambda: cls(capacity=32, generator=torch.Generator().manual_seed(0)), name=cls.__name__)
    passed, detail = _results(report)[check]
    assert passed is False and message in detail, _report_failure(report)


# --- the command --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replaybench")
    register_check_command(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_command_prints_the_report_and_exits_1_on_a_failure(tmp_path, capsys):
    assert main(["check", "memory", "reservoir"]) == 0
    assert "PASS  capacity: capacity 32 respected" in capsys.readouterr().out
    argv = ["check", "agent", _agent_file(tmp_path, "wrong_shape"), "-o", "lr=0.05", "--stream", "split-digits-task"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "on split-digits-task[tiny]" in out and "FAIL  predict: predict returned shape (8, 3)" in out


def test_the_stream_command_takes_a_data_dir(tmp_path, capsys):
    args = _parser().parse_args(["check", "stream", "split-digits", "--data-dir", str(tmp_path)])
    args.func(args)
    assert capsys.readouterr().out.startswith("stream 'split-digits'\nPASS  build")
