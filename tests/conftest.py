"""Shared fixtures."""

from __future__ import annotations

import pytest

from streams import datasets


def fashion_mnist_available() -> bool:
    """Whether the IDX files are on disk (checked without loading them)."""
    stem = "train-images-idx3-ubyte"
    return any((datasets.DEBIAN_FASHION_MNIST / name).is_file() for name in (stem, stem + ".gz"))


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
