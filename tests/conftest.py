"""Shared fixtures."""

from __future__ import annotations

import pytest

from streams import datasets


def fashion_mnist_available() -> bool:
    try:
        datasets.load_fashion_mnist()
    except datasets.DataMissingError:
        return False
    return True


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
