"""The stream container shared by every tensor-backed stream."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from replaybench.errors import ConfigError
from replaybench.params import Interval, Optional, check_param
from replaybench.protocols import Experience, Scenario


@dataclass(frozen=True, eq=False)
class TensorStream:
    """A stream whose experiences are tensors (see :class:`replaybench.protocols.Stream`).

    The fingerprint hashes the source data's digest together with the exact
    split: the parameters, and every experience's classes and index/transform
    arrays, as recorded in ``split_record``. Any change to the data, the
    split, the order or the transforms changes it.
    """

    name: str
    version: str
    scenario: Scenario
    experiences: Sequence[Experience]
    n_classes: int
    input_shape: tuple[int, ...]
    source: str
    """Where the data came from, for ``streams show`` and provenance."""
    params: dict[str, Any] = field(default_factory=dict)
    """The builder's parameters (JSON-ready)."""
    data_digest: str = ""
    """Content hash of the underlying data."""
    split_record: Sequence[bytes] = field(default=(), repr=False)
    """Bytes that pin down the split (index arrays, permutations), one per experience."""
    _fingerprint: list = field(default_factory=list, repr=False)

    @property
    def fingerprint(self) -> str:
        if not self._fingerprint:
            h = hashlib.sha256()
            header = {
                "name": self.name,
                "version": self.version,
                "scenario": self.scenario,
                "params": self.params,
                "data": self.data_digest,
                "classes": [list(e.classes) for e in self.experiences],
            }
            h.update(json.dumps(header, sort_keys=True).encode())
            for record in self.split_record:
                h.update(hashlib.sha256(record).digest())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]

    def describe(self) -> dict[str, Any]:
        """What ``replaybench streams show`` prints."""
        return {
            "name": self.name,
            "version": self.version,
            "scenario": self.scenario,
            "experiences": len(self.experiences),
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "train_sizes": [len(e.train_x) if e.train_x is not None else 0 for e in self.experiences],
            "test_sizes": [len(e.test_x) if e.test_x is not None else 0 for e in self.experiences],
            "classes": [list(e.classes) for e in self.experiences],
            "fingerprint": self.fingerprint,
            "source": self.source,
            "params": self.params,
        }


VALIDATION_KEY = "validation_fraction"
"""The builder option that holds out part of every experience's training data as its test set."""
VALIDATION_SEED = 0
"""Fixed: every agent is tuned on the same held-out items."""


def hold_out_validation(stream: TensorStream, fraction: float) -> TensorStream:
    """``stream`` with a ``fraction`` of each experience's training items, per label, as its test set.

    Presets are chosen on this split; the real test split is never read. The
    held-out items are drawn per experience and label with a fixed seed, so
    every agent sees the same validation data, and the split is part of the
    fingerprint.
    """
    experiences, records = [], []
    for e in stream.experiences:
        if e.train_x is None or e.train_y is None:
            raise ConfigError(f"Stream {stream.name!r} has no training tensors to hold a validation split out of.")
        rng = np.random.default_rng([VALIDATION_SEED, e.index])
        labels = e.train_y.numpy()
        held = []
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            held.append(idx[: max(1, round(fraction * len(idx)))] if len(idx) > 1 else idx[:0])
        val_idx = np.sort(np.concatenate(held))
        keep = np.ones(len(labels), dtype=bool)
        keep[val_idx] = False
        train_idx = torch.from_numpy(np.flatnonzero(keep))
        val = torch.from_numpy(val_idx)
        experiences.append(
            replace(
                e,
                train_x=e.train_x[train_idx],
                train_y=e.train_y[train_idx],
                test_x=e.train_x[val],
                test_y=e.train_y[val],
            )
        )
        records.append(val_idx.astype(np.int64).tobytes())
    return replace(
        stream,
        experiences=tuple(experiences),
        params={**stream.params, VALIDATION_KEY: fraction},
        split_record=(*stream.split_record, *records),
        _fingerprint=[],
    )


def supports_validation(builder: Callable[..., TensorStream]) -> Callable[..., TensorStream]:
    """Give a tensor-stream builder the ``validation_fraction`` option (``None``: the real test split)."""

    @functools.wraps(builder)
    def build(*, validation_fraction: float | None = None, **options: Any) -> TensorStream:
        stream = builder(**options)
        owner = f"stream {options.get('name', stream.name)}"
        check_param(owner, VALIDATION_KEY, validation_fraction, Optional(Interval(float, 0, 1, closed="neither")))
        return stream if validation_fraction is None else hold_out_validation(stream, float(validation_fraction))

    return build
