"""Supervised image streams: class-IL / task-IL splits and domain-IL
permutations and rotations.

Data is held as tensors. A split stream reorders its dataset once, grouping
each experience's classes, so that every experience is a view (a contiguous
slice) of one shared tensor: no copy per experience and no per-sample
transform in the hot loop. Permuted and rotated streams transform the whole
dataset once per experience (their experiences differ in content), sharing
the labels.

Every builder takes ``validation_fraction`` (:func:`replaybench.streams.base.supports_validation`):
when set, that share of each experience's training items becomes its test set,
for choosing hyperparameters without reading the test split.

Every builder takes ``online_batch_size``: when set, the stream is *online*
(one pass over each experience in minibatches of that size). The stream
records it in every experience's ``info["online_batch_size"]`` and in its
parameters (so in its fingerprint); the runner holds agents to it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch

from replaybench.errors import ConfigError
from replaybench.params import Interval, OneOf, Optional, check_param
from replaybench.protocols import Experience
from replaybench.streams import datasets
from replaybench.streams.base import TensorStream, supports_validation
from replaybench.streams.datasets import TensorDataset

LOADERS: dict[str, Callable[..., TensorDataset]] = {
    "digits": lambda data_dir=None, download=False: datasets.load_digits(),
    "fashion-mnist": datasets.load_fashion_mnist,
    "mnist5k": lambda data_dir=None, download=False: datasets.load_mnist5k(),
    "mnist1d": datasets.load_mnist1d,
    "mnist": datasets.load_mnist,
    "cifar10": lambda data_dir=None, download=False: datasets.load_cifar("cifar10", data_dir, download),
    "cifar100": lambda data_dir=None, download=False: datasets.load_cifar("cifar100", data_dir, download),
}
"""Dataset name -> loader ``(data_dir, download) -> TensorDataset``."""

ONLINE_KEY = "online_batch_size"
"""The ``Experience.info`` key that marks an online experience."""


def load_dataset(name: str, data_dir: str | None = None, download: bool = False) -> TensorDataset:
    """Load a dataset by name; unknown names list the known ones."""
    if name not in LOADERS:
        raise ConfigError(f"Unknown dataset {name!r}. Known: {', '.join(sorted(LOADERS))}.")
    return LOADERS[name](data_dir=data_dir, download=download)


def _take_per_class(y: torch.Tensor, classes: list[int], per_class: int | None) -> list[np.ndarray]:
    """For each class, its indices in ``y`` (the first ``per_class`` of them)."""
    y_np = y.numpy()
    out = []
    for c in classes:
        idx = np.flatnonzero(y_np == c)
        out.append(idx if per_class is None else idx[:per_class])
    return out


def _online_info(owner: str, online_batch_size: int | None) -> dict[str, int]:
    check_param(owner, ONLINE_KEY, online_batch_size, Optional(Interval(int, 1, None)))
    return {} if online_batch_size is None else {ONLINE_KEY: online_batch_size}


@supports_validation
def make_split(
    *,
    name: str,
    dataset: str,
    n_experiences: int = 5,
    scenario: str = "class-il",
    class_order_seed: int | None = None,
    train_per_class: int | None = None,
    online_batch_size: int | None = None,
    version: str = "1",
    data_dir: str | None = None,
    download: bool = False,
) -> TensorStream:
    """Split a dataset's classes into ``n_experiences`` disjoint groups.

    Args:
        name: The stream's name.
        dataset: A key of :data:`LOADERS`.
        n_experiences: Number of experiences; must divide the number of classes.
        scenario: "class-il" (one head, no task id) or "task-il" (task id given).
        class_order_seed: ``None`` keeps the natural order 0..C-1; an int
            shuffles the classes with that seed.
        train_per_class: Keep only the first k training items of each class.
        online_batch_size: Make the stream online (one pass, minibatches of
            this size); ``None`` leaves the agent's epochs and batch size.
    """
    owner = f"stream {name}"
    online = _online_info(owner, online_batch_size)
    check_param(owner, "scenario", scenario, OneOf("class-il", "task-il"))
    check_param(owner, "n_experiences", n_experiences, Interval(int, 1, None))
    check_param(owner, "class_order_seed", class_order_seed, Optional(Interval(int, 0, None)))
    check_param(owner, "train_per_class", train_per_class, Optional(Interval(int, 1, None)))
    data = load_dataset(dataset, data_dir, download)
    n_classes = data.n_classes
    if n_experiences > n_classes or n_classes % n_experiences:
        raise ConfigError(f"Cannot split the {n_classes} classes of {dataset} into {n_experiences} equal experiences.")
    order = list(range(n_classes))
    if class_order_seed is not None:
        order = [int(c) for c in np.random.default_rng(class_order_seed).permutation(n_classes)]
    per_exp = n_classes // n_experiences
    train_idx = _take_per_class(data.train_y, order, train_per_class)
    test_idx = _take_per_class(data.test_y, order, None)
    # One reordering copy per stream; experiences are slices of it.
    train_x = data.train_x[torch.from_numpy(np.concatenate(train_idx))]
    train_y = data.train_y[torch.from_numpy(np.concatenate(train_idx))]
    test_x = data.test_x[torch.from_numpy(np.concatenate(test_idx))]
    test_y = data.test_y[torch.from_numpy(np.concatenate(test_idx))]
    experiences, records = [], []
    tr0 = te0 = 0
    for i in range(n_experiences):
        group = range(i * per_exp, (i + 1) * per_exp)
        n_tr = sum(len(train_idx[g]) for g in group)
        n_te = sum(len(test_idx[g]) for g in group)
        experiences.append(
            Experience(
                index=i,
                kind="supervised",
                train_x=train_x[tr0 : tr0 + n_tr],
                train_y=train_y[tr0 : tr0 + n_tr],
                test_x=test_x[te0 : te0 + n_te],
                test_y=test_y[te0 : te0 + n_te],
                task_id=i if scenario == "task-il" else None,
                classes=tuple(order[g] for g in group),
                info=dict(online),
            )
        )
        records.append(b"".join(train_idx[g].tobytes() + test_idx[g].tobytes() for g in group))
        tr0, te0 = tr0 + n_tr, te0 + n_te
    params = {
        "dataset": dataset,
        "n_experiences": n_experiences,
        "class_order": order,
        "train_per_class": train_per_class,
        **online,
    }
    return TensorStream(
        name=name,
        version=version,
        scenario=scenario,
        experiences=tuple(experiences),
        n_classes=n_classes,
        input_shape=tuple(data.train_x.shape[1:]),
        source=data.source,
        params=params,
        data_digest=data.digest,
        split_record=tuple(records),
    )


@supports_validation
def make_permuted(
    *,
    name: str,
    dataset: str,
    n_experiences: int = 10,
    permutation_seed: int = 0,
    train_per_class: int | None = None,
    online_batch_size: int | None = None,
    version: str = "1",
    data_dir: str | None = None,
    download: bool = False,
) -> TensorStream:
    """Domain-IL: every experience has all classes, with its own fixed pixel
    permutation (the first experience keeps the identity, as in GEM)."""
    owner = f"stream {name}"
    online = _online_info(owner, online_batch_size)
    check_param(owner, "n_experiences", n_experiences, Interval(int, 1, None))
    check_param(owner, "permutation_seed", permutation_seed, Interval(int, 0, None))
    data, keep, base_train, train_y = _domain_base(owner, dataset, train_per_class, data_dir, download)
    classes = list(range(data.n_classes))
    base_train, base_test = base_train.flatten(1), data.test_x.flatten(1)
    shape = tuple(data.train_x.shape[1:])
    n_pixels = math.prod(shape)
    rng = np.random.default_rng(permutation_seed)
    experiences, records = [], []
    for i in range(n_experiences):
        perm = np.arange(n_pixels) if i == 0 else rng.permutation(n_pixels)
        p = torch.from_numpy(perm)
        # The identity shares the data; every other permutation is one copy.
        train_flat, test_flat = (base_train, base_test) if i == 0 else (base_train[:, p], base_test[:, p])
        experiences.append(
            Experience(
                index=i,
                kind="supervised",
                train_x=train_flat.reshape(-1, *shape),
                train_y=train_y,
                test_x=test_flat.reshape(-1, *shape),
                test_y=data.test_y,
                classes=tuple(classes),
                info=dict(online),
            )
        )
        records.append(perm.astype(np.int64).tobytes() + keep.astype(np.int64).tobytes())
    params = {
        "dataset": dataset,
        "n_experiences": n_experiences,
        "permutation_seed": permutation_seed,
        "train_per_class": train_per_class,
        **online,
    }
    return TensorStream(
        name=name,
        version=version,
        scenario="domain-il",
        experiences=tuple(experiences),
        n_classes=data.n_classes,
        input_shape=shape,
        source=data.source,
        params=params,
        data_digest=data.digest,
        split_record=tuple(records),
    )


def _domain_base(
    owner: str, dataset: str, train_per_class: int | None, data_dir: str | None, download: bool
) -> tuple[TensorDataset, np.ndarray, torch.Tensor, torch.Tensor]:
    """The data every domain-IL experience transforms: the dataset, the kept
    training indices (the first ``train_per_class`` of each class, in dataset
    order), and those training images and labels."""
    check_param(owner, "train_per_class", train_per_class, Optional(Interval(int, 1, None)))
    data = load_dataset(dataset, data_dir, download)
    classes = list(range(data.n_classes))
    keep = np.sort(np.concatenate(_take_per_class(data.train_y, classes, train_per_class)))
    if len(keep) == len(data.train_y):  # every item kept: share the dataset's tensors
        return data, keep, data.train_x, data.train_y
    index = torch.from_numpy(keep)
    return data, keep, data.train_x[index], data.train_y[index]


def rotate_images(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images [N, C, H, W] counter-clockwise by ``degrees`` about their
    centre (bilinear, zero outside the image); 0 returns ``x`` itself."""
    if degrees % 360 == 0:
        return x
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # affine_grid maps output to input coordinates, so it takes the inverse rotation;
    # y points down in image coordinates, which makes this a counter-clockwise turn on screen.
    affine = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]], dtype=x.dtype)
    grid = torch.nn.functional.affine_grid(affine, [1, *x.shape[1:]], align_corners=False)
    out = torch.empty_like(x)
    for start in range(0, len(x), _ROTATE_CHUNK):  # chunks bound the sampling temporaries
        chunk = x[start : start + _ROTATE_CHUNK]
        out[start : start + len(chunk)] = torch.nn.functional.grid_sample(
            chunk, grid.expand(len(chunk), *grid.shape[1:]), mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return out


_ROTATE_CHUNK = 4096


@supports_validation
def make_rotated(
    *,
    name: str,
    dataset: str,
    n_experiences: int = 5,
    angles: list[float] | None = None,
    max_angle: float = 180.0,
    train_per_class: int | None = None,
    online_batch_size: int | None = None,
    version: str = "1",
    data_dir: str | None = None,
    download: bool = False,
) -> TensorStream:
    """Domain-IL: every experience has all classes, all images rotated by the
    experience's fixed angle (rotated MNIST, Lopez-Paz & Ranzato, GEM, 2017).

    Args:
        name: The stream's name.
        dataset: A key of :data:`LOADERS` with images [C, H, W].
        n_experiences: Number of experiences (and angles).
        angles: The angle of each experience in degrees; its length must be
            ``n_experiences``. ``None`` spaces them evenly,
            ``i * max_angle / n_experiences`` (the first keeps the images).
        max_angle: The span of the evenly spaced angles, in degrees.
        train_per_class: Keep only the first k training items of each class.
        online_batch_size: Make the stream online (see :func:`make_split`).
    """
    owner = f"stream {name}"
    online = _online_info(owner, online_batch_size)
    check_param(owner, "n_experiences", n_experiences, Interval(int, 1, None))
    check_param(owner, "max_angle", max_angle, Interval(float, 0, 360))
    if angles is None:
        angles = [i * max_angle / n_experiences for i in range(n_experiences)]
    elif (
        not isinstance(angles, (list, tuple))
        or len(angles) != n_experiences
        or not all(isinstance(a, (int, float)) and math.isfinite(a) for a in angles)
    ):
        raise ConfigError(
            f"The 'angles' parameter of {owner} must be a list of {n_experiences} finite numbers "
            f"(one per experience). Got {angles!r} instead."
        )
    angles = [float(a) for a in angles]
    data, keep, base_train, train_y = _domain_base(owner, dataset, train_per_class, data_dir, download)
    if base_train.ndim != 4:
        raise ConfigError(f"Rotation needs images [C, H, W]; dataset {dataset!r} gives {tuple(base_train.shape[1:])}.")
    experiences, records = [], []
    for i, angle in enumerate(angles):
        train_x, test_x = rotate_images(base_train, angle), rotate_images(data.test_x, angle)
        experiences.append(
            Experience(
                index=i,
                kind="supervised",
                train_x=train_x,
                train_y=train_y,
                test_x=test_x,
                test_y=data.test_y,
                classes=tuple(range(data.n_classes)),
                info={"angle": angle, **online},
            )
        )
        # The rotated pixels are hashed too: interpolation numerics may differ across torch versions.
        pixels = hashlib.sha256(train_x.contiguous().numpy())
        pixels.update(test_x.contiguous().numpy())
        records.append(np.float64(angle).tobytes() + keep.astype(np.int64).tobytes() + pixels.digest())
    params = {
        "dataset": dataset,
        "n_experiences": n_experiences,
        "angles": angles,
        "train_per_class": train_per_class,
        **online,
    }
    return TensorStream(
        name=name,
        version=version,
        scenario="domain-il",
        experiences=tuple(experiences),
        n_classes=data.n_classes,
        input_shape=tuple(data.train_x.shape[1:]),
        source=data.source,
        params=params,
        data_digest=data.digest,
        split_record=tuple(records),
    )
