"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from replaybench.streams import datasets

# The suite's networks are small: on 2 cores, intra-op threads mostly add synchronisation
# (and OpenMP spinning under load), so the whole session runs with one.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_user_data_dir(tmp_path_factory):
    """Runs that default to the user's leaderboard store (sweeps do) write to a temporary one,
    in this process and in the subprocesses it starts."""
    import os

    previous = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if previous is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = previous


@pytest.fixture(autouse=True)
def _no_wandb_login(tmp_path_factory, monkeypatch):
    """No test logs to W&B online by accident: a developer's key or netrc would make ``--wandb`` go online
    (flag, then WANDB_MODE, then online when logged in). Tests that need a key set one themselves."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path_factory.getbasetemp() / "no-netrc"))


def fashion_mnist_available() -> bool:
    """Whether the IDX files are on disk (checked without loading them)."""
    stem = "train-images-idx3-ubyte"
    return any((datasets.DEBIAN_FASHION_MNIST / name).is_file() for name in (stem, stem + ".gz"))


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)


class DigitsStreamStub:
    """The stream metadata an agent is built from, for tests that call agents directly."""

    name, scenario, n_classes, input_shape, experiences = "digits", "class-il", 10, (1, 8, 8), ()


@pytest.fixture(scope="session")
def digits_experience():
    """All of scikit-learn's digits as one supervised experience."""
    from replaybench.protocols import Experience

    d = datasets.load_digits()
    return Experience(
        index=0,
        kind="supervised",
        train_x=d.train_x,
        train_y=d.train_y,
        test_x=d.test_x,
        test_y=d.test_y,
        classes=tuple(range(10)),
    )
