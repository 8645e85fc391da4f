"""Supervised streams and their datasets: shapes, class partitions, seeded order,
fingerprints, rotations, the online flag, and every bad-input case."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from conftest import fashion_mnist_available, needs_fashion_mnist

from replaybench.cli import main
from replaybench.errors import ConfigError, DataCorruptError, DataMissingError
from replaybench.runner import make_stream
from replaybench.streams import datasets, vision
from replaybench.streams.base import TensorStream


def check_partition(stream: TensorStream) -> None:
    """Shapes, labels within each experience's classes, and the scenario's class partition."""
    assert len(stream.fingerprint) == 64
    seen: list[int] = []
    for i, e in enumerate(stream.experiences):
        assert e.index == i
        train_y = e.train_y if e.train_y is not None else e.info["probe_train_y"]
        assert tuple(e.train_x.shape[1:]) == tuple(e.test_x.shape[1:]) == stream.input_shape
        assert e.train_x.dtype == torch.float32 and train_y.dtype == torch.int64
        assert len(e.train_x) == len(train_y) > 0 and len(e.test_x) == len(e.test_y) > 0
        assert set(train_y.tolist()) == set(e.test_y.tolist()) == set(e.classes)
        seen += list(e.classes)
        assert e.task_id == (i if stream.scenario == "task-il" else None)
    if stream.scenario == "domain-il":
        assert all(e.classes == tuple(range(stream.n_classes)) for e in stream.experiences)
    else:  # class-il, task-il, unsupervised: disjoint groups covering every class
        assert sorted(seen) == list(range(stream.n_classes))


OFFLINE_STREAMS = [
    "split-digits",
    "split-digits-task",
    "permuted-digits",
    "split-mnist5k",
    "split-mnist1d",
    "unsup-split-digits",
    "unsup-split-mnist5k",
]


@pytest.mark.parametrize("name", OFFLINE_STREAMS)
def test_offline_standard_streams(name):
    stream = make_stream(name)
    assert stream.name == name
    check_partition(stream)
    assert make_stream(name).fingerprint == stream.fingerprint


@needs_fashion_mnist
def test_fashion_mnist_streams():
    split = make_stream("split-fmnist")
    check_partition(split)
    assert [len(e.train_x) for e in split.experiences] == [12000] * 5
    # Experiences are views of one reordered tensor: no copy per experience.
    storages = {e.train_x.untyped_storage().data_ptr() for e in split.experiences}
    assert len(storages) == 1
    for name in ("permuted-fmnist", "rotated-fmnist", "unsup-split-fmnist"):
        small = make_stream(name, train_per_class=50)
        check_partition(small)
        per_experience = 500 if small.scenario == "domain-il" else 100  # 50 per class, 10 or 2 classes
        assert [len(e.train_x) for e in small.experiences] == [per_experience] * len(small.experiences)


def test_split_sizes_match_the_dataset():
    data = datasets.load_digits()
    stream = make_stream("split-digits")
    for e in stream.experiences:
        for c in e.classes:
            assert (e.train_y == c).sum() == (data.train_y == c).sum()
            assert (e.test_y == c).sum() == (data.test_y == c).sum()
    assert torch.equal(stream.experiences[0].train_x[0], data.train_x[data.train_y == 0][0])


def test_class_order_is_seeded_and_configurable():
    build = lambda **kw: vision.make_split(name="s", dataset="digits", **kw)  # noqa: E731
    natural, a, b, other = build(), build(class_order_seed=3), build(class_order_seed=3), build(class_order_seed=4)
    assert [e.classes for e in natural.experiences] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [e.classes for e in a.experiences] == [e.classes for e in b.experiences]
    assert a.fingerprint == b.fingerprint
    assert [e.classes for e in a.experiences] != [e.classes for e in other.experiences]
    assert len({natural.fingerprint, a.fingerprint, other.fingerprint}) == 3
    assert all(torch.equal(x.train_x, y.train_x) for x, y in zip(a.experiences, b.experiences))

    two = build(n_experiences=2, train_per_class=20)
    check_partition(two)
    assert [len(e.train_x) for e in two.experiences] == [100, 100]
    assert two.fingerprint != build(n_experiences=2, train_per_class=21).fingerprint


def test_fingerprint_changes_when_the_data_changes(monkeypatch):
    before = vision.make_split(name="s", dataset="digits").fingerprint
    data = datasets.load_digits()
    train_x = data.train_x.clone()
    train_x[100, 0, 3, 3] += 1 / 16  # one pixel of one image
    altered = datasets.TensorDataset("digits", train_x, data.train_y, data.test_x, data.test_y, data.source)
    monkeypatch.setitem(vision.LOADERS, "digits", lambda data_dir=None, download=False: altered)
    assert vision.make_split(name="s", dataset="digits").fingerprint != before
    test_y = data.test_y.clone()
    test_y[0] = (test_y[0] + 1) % 10  # one test label
    relabelled = datasets.TensorDataset("digits", data.train_x, data.train_y, data.test_x, test_y, data.source)
    monkeypatch.setitem(vision.LOADERS, "digits", lambda data_dir=None, download=False: relabelled)
    assert vision.make_split(name="s", dataset="digits").fingerprint != before


def test_rotated_stream_rotates_each_experience():
    stream = vision.make_rotated(name="r", dataset="digits", n_experiences=3, angles=[0, 90, 180])
    check_partition(stream)
    base = stream.experiences[0]
    assert torch.equal(base.train_x, datasets.load_digits().train_x)
    assert torch.allclose(stream.experiences[1].train_x, torch.rot90(base.train_x, 1, (2, 3)), atol=1e-5)
    assert torch.allclose(stream.experiences[2].test_x, torch.rot90(base.test_x, 2, (2, 3)), atol=1e-5)
    assert all(torch.equal(e.train_y, base.train_y) for e in stream.experiences)
    assert [e.info["angle"] for e in stream.experiences] == [0.0, 90.0, 180.0]

    even = vision.make_rotated(name="r", dataset="digits", n_experiences=4, max_angle=180)
    assert even.params["angles"] == [0.0, 45.0, 90.0, 135.0]
    assert even.fingerprint == vision.make_rotated(name="r", dataset="digits", n_experiences=4).fingerprint
    assert (
        even.fingerprint
        != vision.make_rotated(name="r", dataset="digits", n_experiences=4, angles=[0, 45, 90, 136]).fingerprint
    )


def test_rotation_is_counter_clockwise():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 0, 4] = 1.0  # top right corner
    turned = vision.rotate_images(image, 90)
    assert turned[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-5)  # top left
    assert turned.sum() == pytest.approx(1.0, abs=1e-5)


def test_rotated_stream_refuses_bad_angles():
    with pytest.raises(ConfigError, match="'angles' parameter of stream r must be a list of 3"):
        vision.make_rotated(name="r", dataset="digits", n_experiences=3, angles=[0, 90])
    with pytest.raises(ConfigError, match="'max_angle'"):
        vision.make_rotated(name="r", dataset="digits", max_angle=-1.0)
    with pytest.raises(ConfigError, match="Rotation needs images"):
        vision.make_rotated(name="r", dataset="mnist1d", n_experiences=2)


def test_online_flag_is_recorded_and_fingerprinted():
    offline = vision.make_permuted(name="p", dataset="digits", n_experiences=2)
    online = vision.make_permuted(name="p", dataset="digits", n_experiences=2, online_batch_size=10)
    assert all(e.info == {} for e in offline.experiences)
    assert all(e.info["online_batch_size"] == 10 for e in online.experiences)
    assert online.params["online_batch_size"] == 10 and "online_batch_size" not in offline.params
    assert online.fingerprint != offline.fingerprint
    split = vision.make_split(name="s", dataset="digits", online_batch_size=1)
    assert all(e.info["online_batch_size"] == 1 for e in split.experiences)
    expected = r"'online_batch_size' parameter of stream s must be None or an int in the range \[1, inf\). Got 0"
    with pytest.raises(ConfigError, match=expected):
        vision.make_split(name="s", dataset="digits", online_batch_size=0)


def test_permuted_stream_permutes_pixels_consistently():
    stream = vision.make_permuted(name="p", dataset="digits", n_experiences=3, permutation_seed=1)
    base, moved = stream.experiences[0].train_x.flatten(1), stream.experiences[2].train_x.flatten(1)
    # A fixed permutation: sorting each image's pixels gives the same multiset.
    assert torch.equal(base.sort(1).values, moved.sort(1).values) and not torch.equal(base, moved)
    assert (
        stream.fingerprint
        != vision.make_permuted(name="p", dataset="digits", n_experiences=3, permutation_seed=2).fingerprint
    )


# --- datasets -------------------------------------------------------------------------------------


def test_mnist1d_is_generated_cached_and_leaves_global_rngs_alone(tmp_path):
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    small = datasets.load_mnist1d(tmp_path, num_samples=200, seed=7)
    assert np.random.random() == expected_next
    assert tuple(small.train_x.shape) == (160, 1, 40) and tuple(small.test_x.shape) == (40, 1, 40)
    assert small.train_x.dtype == torch.float32 and set(small.train_y.tolist()) <= set(range(10))
    cached = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(cached) == 1
    datasets._load_mnist1d_cached.cache_clear()
    again = datasets.load_mnist1d(tmp_path, num_samples=200, seed=7)
    assert again.digest == small.digest
    cached[0].write_bytes(b"not an npz")  # a damaged cache is regenerated, identically
    datasets._load_mnist1d_cached.cache_clear()
    assert datasets.load_mnist1d(tmp_path, num_samples=200, seed=7).digest == small.digest
    assert datasets.load_mnist1d(tmp_path, num_samples=200, seed=8).digest != small.digest


def _write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=60, n_test=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def test_mnist_reads_torchvision_layout_and_splits(tmp_path):
    _fake_mnist(tmp_path)
    data = datasets.load_mnist(tmp_path)
    assert tuple(data.train_x.shape) == (60, 1, 28, 28) and float(data.train_x.max()) <= 1.0
    stream = vision.make_split(name="split-mnist", dataset="mnist", data_dir=str(tmp_path))
    check_partition(stream)


def test_download_only_datasets_say_how_to_get_them(tmp_path):
    for load, name in (
        (datasets.load_mnist, "MNIST"),
        (lambda d: datasets.load_cifar("cifar10", d), "CIFAR10"),
        (lambda d: datasets.load_cifar("cifar100", d), "CIFAR100"),
    ):
        with pytest.raises(DataMissingError, match=f"{name} not found in .*pass --download"):
            load(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()  # nothing was downloaded or created


@pytest.mark.parametrize("name", ["split-mnist", "split-cifar10", "split-cifar100"])
def test_download_streams_fail_offline_with_one_line(name, tmp_path, capsys):
    code = main(["streams", "show", name, "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--download" in err[0]


def _fake_cifar(root, name: str, per_batch: int = 20) -> None:
    folder, train_files, test_file, key, n_classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10),
        "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i, file in enumerate([*train_files, test_file]):
        n = per_batch * (n_classes // 10 if name == "cifar100" else 1)
        batch = {
            "data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            key: [int(c) for c in (np.arange(n) + i) % n_classes],
        }
        with (root / folder / file).open("wb") as f:
            pickle.dump(batch, f)


def test_cifar_pickles_load_as_channel_first_images(tmp_path):
    _fake_cifar(tmp_path, "cifar10")
    data = datasets.load_cifar("cifar10", tmp_path)
    assert tuple(data.train_x.shape) == (100, 3, 32, 32) and tuple(data.test_x.shape) == (20, 3, 32, 32)
    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.allclose(data.train_x[0, 1].flatten(), torch.from_numpy(first[1024:2048] / 255.0).float())
    check_partition(vision.make_split(name="c", dataset="cifar10", data_dir=str(tmp_path)))

    _fake_cifar(tmp_path, "cifar100")
    stream = vision.make_split(name="c", dataset="cifar100", n_experiences=10, data_dir=str(tmp_path))
    check_partition(stream)
    assert stream.n_classes == 100 and len(stream.experiences[0].classes) == 10


def test_corrupt_cifar_file_is_a_clear_error(tmp_path):
    _fake_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataCorruptError, match="Cannot read CIFAR batch .*test_batch"):
        datasets.load_cifar("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    datasets._load_cifar_cached.cache_clear()
    with pytest.raises(DataMissingError, match="data_batch_3 is missing"):
        datasets.load_cifar("cifar10", tmp_path)


def test_dataset_digest_covers_every_tensor():
    data = datasets.load_digits()
    for field in ("train_x", "train_y", "test_x", "test_y"):
        tensor = getattr(data, field).clone()
        tensor.view(-1)[0] += 1
        changed = dataclasses.replace(data, **{field: tensor}, _digest=[])
        assert changed.digest != data.digest, field


# --- bad input through the CLI: one line, exit code 2 ---------------------------------------------


@pytest.mark.parametrize(
    "table, expected",
    [
        ('dataset = "digitz"', "Unknown dataset 'digitz'. Known: cifar10, cifar100, digits"),
        (
            'scenario = "domain-incremental"',
            "The 'scenario' parameter of stream split-digits must be one of 'class-il'",
        ),
        ("n_experiences = 20", "Cannot split the 10 classes of digits into 20 equal experiences."),
        ("n_experiences = 3", "Cannot split the 10 classes of digits into 3 equal experiences."),
        ("online_batch_size = 0", "'online_batch_size' parameter of stream split-digits"),
        ("shuffle = true", "unexpected keyword argument 'shuffle'"),
    ],
)
def test_bad_stream_options_are_one_line_errors(table, expected, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(f"[stream]\n{table}\n")
    code = main(
        [
            "run",
            "--stream",
            "split-digits",
            "--agent",
            "naive",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
            "--no-plots",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert expected in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _pinned(stream_names):
    from replaybench.leaderboards.boards import board_names, load_board

    pins = []
    for board in board_names():
        pins += [
            (s.name, dict(s.options), s.fingerprint)
            for s in load_board(board).streams
            if s.fingerprint and s.name in stream_names
        ]
    return pins


def test_pinned_fingerprints_are_stable():
    """The leaderboards pin these fingerprints: a loader or split change must not move them."""
    names = ["split-digits", "split-mnist5k"] + (["split-fmnist"] if fashion_mnist_available() else [])
    pins = _pinned(names)
    assert {name for name, _, _ in pins} == set(names)
    for name, options, fingerprint in pins:
        assert make_stream(name, **options).fingerprint == fingerprint, name


@pytest.mark.slow
@needs_fashion_mnist
def test_pinned_permuted_fmnist_fingerprint_is_stable():
    for name, options, fingerprint in _pinned(["permuted-fmnist"]):
        assert make_stream(name, **options).fingerprint == fingerprint


def test_validation_split_holds_out_training_items_per_label_and_never_reads_the_test_split():
    plain = make_stream("split-digits")
    held = make_stream("split-digits", validation_fraction=0.2)
    again = make_stream("split-digits", validation_fraction=0.2)
    assert held.fingerprint != plain.fingerprint and held.fingerprint == again.fingerprint
    for p, h in zip(plain.experiences, held.experiences, strict=True):
        assert len(h.train_x) + len(h.test_x) == len(p.train_x)
        train_rows = {tuple(x.flatten().tolist()) for x in p.train_x}
        assert all(tuple(x.flatten().tolist()) in train_rows for x in h.test_x)  # carved from training data
        assert all(tuple(x.flatten().tolist()) in train_rows for x in h.train_x)
        for label in p.classes:  # stratified: each label keeps ~20% out
            n = int((p.train_y == label).sum())
            assert abs(int((h.test_y == label).sum()) - round(0.2 * n)) <= 1


def test_validation_fraction_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ConfigError, match="validation_fraction"):
        make_stream("split-digits", validation_fraction=1.0)
