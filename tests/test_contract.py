"""The agent contract as the README states it, held by a third-party agent written from it.

A plain ``@dataclass(frozen=True)`` Config (no replaybench base class) runs,
submits to a board and passes ``replaybench check agent``; its annotated
types are checked with the built-in agents' one-line errors; logits may mask
classes with ``-inf`` but not be NaN.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.store import Store
from replaybench.runner import RunSpec, agent_class_and_config, run

README_AGENT = '''
from dataclasses import dataclass
from typing import Literal, Optional

import torch


class MyAgent:
    """A linear softmax classifier, written from the README alone."""

    kinds = frozenset({"supervised"})

    @dataclass(frozen=True)
    class Config:
        lr: float = 0.5
        epochs: int = 30
        batch_size: int = 64
        hidden: tuple[int, ...] = ()
        init: Literal["zeros", "normal"] = "zeros"
        note: Optional[str] = None
        mask: bool = False

    def __init__(self, *, stream, config, seed, device="cpu"):
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self.n_classes = stream.n_classes
        width = 1
        for d in stream.input_shape:
            width *= d
        self.weight = torch.zeros(width, stream.n_classes, requires_grad=True)
        self.seen = torch.zeros(stream.n_classes, dtype=torch.bool)

    def learn(self, experience):
        self.seen[list(experience.classes)] = True
        x, y = experience.train_x.flatten(1), experience.train_y
        optimiser = torch.optim.SGD([self.weight], lr=self.config.lr)
        for _ in range(self.config.epochs):
            order = torch.randperm(len(x), generator=self.generator)
            for start in range(0, len(x), self.config.batch_size):
                i = order[start:start + self.config.batch_size]
                loss = torch.nn.functional.cross_entropy(self.logits(x[i]), y[i])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return {"loss": loss.item()}

    def logits(self, x):
        out = x.flatten(1) @ self.weight
        if self.config.mask:  # classes never seen cannot be predicted: -inf, as class-IL code does
            out = out.masked_fill(~self.seen, float("-inf"))
        return out

    def predict(self, x, task_id=None):
        with torch.no_grad():
            return self.logits(x)
'''

NAN_AGENT = (
    README_AGENT
    + """

class NanAgent(MyAgent):
    def predict(self, x, task_id=None):
        return torch.full((len(x), self.n_classes), float("nan"))
"""
)


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("third_party") / "my_agent.py"
    path.write_text(NAN_AGENT)
    return path


def test_a_plain_frozen_dataclass_config_is_checked_like_the_built_in_ones(agent_file):
    name = f"{agent_file}:MyAgent"
    _, config = agent_class_and_config(name, {"hidden": [8, 8], "lr": 1})
    assert config.hidden == (8, 8) and config.lr == 1
    cases = {
        "lr": ("fast", "The 'lr' parameter of agent '{n}' must be a float. Got 'fast' instead."),
        "epochs": (2.5, "The 'epochs' parameter of agent '{n}' must be an int. Got 2.5 instead."),
        "init": ("uniform", "The 'init' parameter of agent '{n}' must be one of 'zeros', 'normal'. Got 'uniform'"),
        "mask": (1, "The 'mask' parameter of agent '{n}' must be a bool. Got 1 instead."),
        "hidden": ([8, "x"], "The 'hidden' parameter of agent '{n}' must be a tuple of ints. Got (8, 'x') instead."),
        "note": (3, "The 'note' parameter of agent '{n}' must be a str or None. Got 3 instead."),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError) as caught:
            agent_class_and_config(name, {key: value})
        assert message.format(n=name) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="lr=inf|Got inf instead"):
        agent_class_and_config(name, {"lr": float("inf")})
    with pytest.raises(ConfigError, match="Unknown option 'epoch'.*Did you mean 'epochs'"):
        agent_class_and_config(name, {"epoch": 3})


def test_minus_inf_masks_classes_and_nan_is_a_failed_run(agent_file):
    masked = run(RunSpec(stream="split-digits", agent=f"{agent_file}:MyAgent", seed=0, agent_options={"mask": True}))
    plain = run(RunSpec(stream="split-digits", agent=f"{agent_file}:MyAgent", seed=0))
    assert masked.metrics["acc"] > 0.15 and masked.R[0][0] > 0.9
    # before any experience every class is masked: a row of -inf still scores (argmax picks a class)
    assert all(0.0 <= b <= 1.0 for b in masked.baseline)
    assert masked.R[-1] == pytest.approx(plain.R[-1], abs=0.2)
    with pytest.raises(Exception, match="NaN or \\+inf"):
        run(RunSpec(stream="split-digits", agent=f"{agent_file}:NanAgent", seed=0))


def test_the_readme_agent_runs_submits_and_passes_the_check(agent_file, tmp_path, capsys):
    name = f"{agent_file}:MyAgent"
    assert (
        main(["run", "--stream", "split-digits", "--agent", name, "--out", str(tmp_path / "runs"), "--no-plots"]) == 0
    )
    board = tmp_path / "tiny.toml"
    board.write_text(
        textwrap.dedent(f"""\
        name = "tiny"
        version = "1"
        seeds = [0, 1]
        metrics = ["acc", "bwt"]
        primary_metric = "acc"
        direction = "higher"
        [streams.split-digits]
        fingerprint = "{load_board("quick").stream("split-digits").fingerprint}"
        [budget]
        epochs = 5
        """)
    )
    store = tmp_path / "lb.sqlite"
    assert (
        main(
            [
                "submit",
                name,
                "--board",
                str(board),
                "--store",
                str(store),
                "--out",
                str(tmp_path / "sub"),
                "--no-plots",
                "--name",
                "readme agent",
            ]
        )
        == 0
    )
    with Store(store) as s:
        (sub,) = s.submissions("tiny")
        assert sub.status == "complete" and sub.config["epochs"] == 5 and sub.config["hidden"] == []
        assert [r.seed for r in s.runs(sub.id)] == [0, 1]
    capsys.readouterr()
    assert main(["check", "agent", name]) == 0
    assert "FAIL" not in capsys.readouterr().out
