"""The stream container shared by every tensor-backed stream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
