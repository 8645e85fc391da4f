"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from streams import datasets

# The suite's networks are small: on 2 cores, intra-op threads mostly add synchronisation
# (and OpenMP spinning under load), so the whole session runs with one.
torch.set_num_threads(1)


def fashion_mnist_available() -> bool:
    """Whether the IDX files are on disk (checked without loading them)."""
    stem = "train-images-idx3-ubyte"
    return any((datasets.DEBIAN_FASHION_MNIST / name).is_file() for name in (stem, stem + ".gz"))


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
