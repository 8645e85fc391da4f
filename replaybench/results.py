"""RunResult: what one run produced, and how it is written to disk.

A results JSON has the top-level keys ``schema``, ``spec``, ``R``,
``baseline``, ``metrics``, ``costs`` and ``provenance`` (and ``extras``,
``non_finite`` where there are any). It is written atomically (a temporary
file renamed into place), so an interrupted run never leaves a half-written
result, and a heatmap PNG of R is written beside it.

Files are named by the run's identity, :func:`run_id`:
``<stream>__<agent>__seed<k>__<hash>``, where the hash covers everything in
the spec that changes the numbers besides the names and the seed (agent and
stream options, device, reference runs). So a result is never replaced by
one of a different spec: a different spec is a different file, and the same
spec gives the same R.

An undefined metric (forgetting, BWT or FWT after one experience, FWT on a
class-IL stream; see :mod:`replaybench.metrics`) is ``None`` in a result and
``null`` in its file, and reads back as ``None``. JSON has no NaN or
infinity: a non-finite number (a per-task value in ``extras``, say) is also
written as ``null``, but its place is recorded under ``non_finite``
(``{"extras.forward_transfer_per_task.0": "nan"}``) and :func:`read_result`
puts it back, so the two stay distinct.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.redact import redact

SCHEMA_VERSION = 1
FAILED_SUFFIX = ".failed.json"


@dataclass
class RunResult:
    spec: dict[str, Any]
    R: list[list[float]]
    baseline: list[float]
    metrics: dict[str, Any]
    costs: dict[str, Any]
    provenance: dict[str, Any]
    schema: int = SCHEMA_VERSION
    extras: dict[str, Any] = field(default_factory=dict)
    """Agent- or stream-specific extras (e.g. TI/TD accuracies); optional."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["extras"]:
            d.pop("extras")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        return cls(
            **{k: d[k] for k in ("spec", "R", "baseline", "metrics", "costs", "provenance", "schema")},
            extras=d.get("extras", {}),
        )

    @property
    def run_name(self) -> str:
        """``<stream>__<agent>__seed<k>``: what a person reads (not unique across options)."""
        return run_name(self.spec["stream"], self.spec["agent"], self.spec["seed"])

    @property
    def run_id(self) -> str:
        """The run's identity and file stem (:func:`run_id`)."""
        return run_id(self.spec)


def format_bytes(n: float | None) -> str:
    """``n`` bytes in decimal units (B, kB, MB, GB), for ``costs["state_bytes"]`` in tables; "n/a" for None.

    A result whose agent does not count its state has no ``state_bytes``: that is unknown, never 0 B.

    Example:
        >>> format_bytes(1_523_280), format_bytes(264), format_bytes(None)
        ('1.52 MB', '264 B', 'n/a')
    """
    if n is None:
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (no separators, no '..'), secrets redacted.

    Every file, folder and W&B name built from a user's string goes through here, so a token
    pasted into an agent path or a display name never becomes part of a name.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", redact(text)).strip(".-")
    return cleaned or "unnamed"


def run_name(stream: str, agent: str, seed: int) -> str:
    """``<stream>__<agent>__seed<k>``, sanitised for file names (secrets redacted, see :func:`safe_name`)."""
    return f"{safe_name(stream)}__{safe_name(agent)}__seed{int(seed)}"


NUMBER_CHANGING_FLAGS = ("forward_transfer_reference", "intransigence_reference")
"""Spec flags that add reference runs: hashed only when set, so older identities stay valid."""


def options_hash(spec: Mapping[str, Any]) -> str:
    """8 hex digits of SHA-256 over what changes a run's numbers besides its names and seed."""
    payload = {
        "agent_options": dict(spec.get("agent_options", {})),
        "stream_options": dict(spec.get("stream_options", {})),
        "device": spec.get("device", "cpu"),
    }
    payload.update({flag: True for flag in NUMBER_CHANGING_FLAGS if spec.get(flag)})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id(spec: Mapping[str, Any]) -> str:
    """``<stream>__<agent>__seed<k>__<options hash>``: a run's file name and resume key."""
    return f"{run_name(spec['stream'], spec['agent'], spec['seed'])}__{options_hash(spec)}"


# --- JSON without NaN ------------------------------------------------------------------------------
def _encode_non_finite(value: Any, where: str, found: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found[where] = repr(value)  # 'nan', 'inf' or '-inf'
        return None
    if isinstance(value, Mapping):
        return {k: _encode_non_finite(v, f"{where}.{k}" if where else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_non_finite(v, f"{where}.{i}", found) for i, v in enumerate(value)]
    return value


def without_non_finite(value: Any) -> tuple[Any, dict[str, str]]:
    """``value`` (JSON-ready data) with NaN and infinities as None, and where each one was."""
    found: dict[str, str] = {}
    return _encode_non_finite(value, "", found), found


def result_json(result: RunResult, *, indent: int | None = 1) -> str:
    """``result`` as strict JSON: non-finite numbers become null, recorded under ``non_finite``."""
    data, found = without_non_finite(result.to_dict())
    if found:
        data["non_finite"] = found
    return json.dumps(data, indent=indent, allow_nan=False)


def _restore(data: Any, path: Sequence[str], value: float) -> None:
    *parents, last = path
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


def result_from_json(text: str) -> RunResult:
    data = json.loads(text)
    for where, value in data.pop("non_finite", {}).items():
        _restore(data, where.split("."), float(value))
    return RunResult.from_dict(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def result_path(folder: str | Path, identity: str) -> Path:
    return Path(folder) / f"{identity}.json"


def failure_path(folder: str | Path, identity: str) -> Path:
    return Path(folder) / f"{identity}{FAILED_SUFFIX}"


def write_result(result: RunResult, out_dir: str | Path, heatmap: bool = True) -> Path:
    """Write ``<run id>.json`` (and ``.png``) into ``out_dir``; return the JSON path.

    Without ``heatmap`` an older PNG of the same run is removed, so no figure
    is left beside a result it was not drawn from.
    """
    path = result_path(out_dir, result.run_id)
    atomic_write_text(path, result_json(result))
    if heatmap:
        write_heatmap(result, path.with_suffix(".png"))
    else:
        path.with_suffix(".png").unlink(missing_ok=True)
    failure_path(out_dir, result.run_id).unlink(missing_ok=True)
    return path


def write_failure(
    out_dir: str | Path,
    identity: str,
    spec: Mapping[str, Any],
    failure: Mapping[str, Any],
    *,
    seconds: float | None,
    host: str | None,
) -> Path:
    """Write ``<run id>.failed.json``: the spec, the failure's kind, error and traceback; return its path."""
    path = failure_path(out_dir, identity)
    record = {
        "run_id": identity,
        "spec": dict(spec),
        **failure,
        "seconds": seconds,
        "host": host,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(path, json.dumps(record, indent=1, default=str))
    return path


def read_result(path: str | Path) -> RunResult:
    return result_from_json(Path(path).read_text())


def check_writable_folder(folder: str | Path, *, what: str = "--out") -> Path:
    """Refuse a results folder that cannot be written, before any work; create nothing.

    The folder may not exist yet; then its nearest existing ancestor must be
    a folder that accepts a new file (tried with a temporary file, removed).
    """
    target = Path(folder)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {target} is not a folder: {probe} is a file.")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".replaybench-write-check.")
    except OSError as exc:
        raise ConfigError(f"{what} {target} cannot be written: {exc.strerror or exc} ({probe}).") from None
    os.close(fd)
    os.unlink(tmp)
    return target


class ResultsFolder:
    """The pipeline's sink for results on disk: ``<run id>.json`` (+ ``.png``) or ``<run id>.failed.json``.

    Args:
        folder: Where the files go (created at the first write).
        heatmaps: Draw R as a PNG beside each result.
    """

    def __init__(self, folder: str | Path, *, heatmaps: bool = True) -> None:
        self.folder = Path(folder)
        self.heatmaps = heatmaps

    def open(self, plans: Sequence[Any]) -> None:
        """Refuse an unwritable folder, and a file of another spec under one of the plans' names."""
        check_writable_folder(self.folder)
        for plan in plans:
            path = result_path(self.folder, plan.run_id)
            if path.is_file():
                try:
                    stored = json.loads(path.read_text()).get("spec", {})
                except (OSError, ValueError, AttributeError):
                    continue  # unreadable: it will be replaced by a complete result
                if _identity_fields(stored) != _identity_fields(plan.spec.to_dict()):
                    raise ConfigError(f"{path} holds a result of another spec; choose another --out.")

    def record(self, outcome: Any) -> None:
        if outcome.resumed:
            outcome.artifacts.setdefault("results", str(result_path(self.folder, outcome.plan.run_id)))
            return
        if outcome.result is not None:
            path = write_result(outcome.result, self.folder, heatmap=self.heatmaps)
        else:
            path = write_failure(
                self.folder,
                outcome.plan.run_id,
                outcome.plan.spec.to_dict(),
                outcome.failure,
                seconds=outcome.seconds,
                host=outcome.host,
            )
        outcome.artifacts["results"] = str(path)

    def close(self, *, interrupted: bool) -> None:
        pass


def _identity_fields(spec: Mapping[str, Any]) -> tuple:
    return (spec.get("stream"), spec.get("agent"), spec.get("seed"), options_hash(spec))


def write_heatmap(result: RunResult, path: Path) -> None:
    """A PNG of R with the values printed in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = len(result.R)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * t, 0.8 + 0.6 * t), dpi=120)
    draw_heatmap(ax, result.R, title=f"{result.spec['agent']} on {result.spec['stream']} (seed {result.spec['seed']})")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def draw_heatmap(ax: Any, R: Any, *, title: str) -> Any:
    """Draw R on the matplotlib axes ``ax``, each cell's value printed, with a colour bar; return the image.

    Args:
        ax: The axes to draw on.
        R: The T × T score matrix (a single run's, or a mean over seeds).
        title: The axes' title.
    """
    import numpy as np

    r = np.asarray(R, dtype=float)
    t = len(r)
    im = ax.imshow(r, vmin=0.0, vmax=max(1.0, float(r.max())), cmap="viridis")
    for i in range(t):
        for j in range(t):
            ax.text(
                j,
                i,
                f"{r[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if r[i, j] < 0.6 else "black",
            )
    ax.set_xlabel("evaluated on experience j")
    ax.set_ylabel("after learning experience i")
    ax.set_xticks(range(t))
    ax.set_yticks(range(t))
    ax.set_title(title, fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return im
