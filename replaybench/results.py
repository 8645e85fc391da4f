"""RunResult: what one run produced, and how it is written to disk.

A results JSON has the top-level keys ``schema``, ``spec``, ``R``,
``baseline``, ``metrics``, ``costs`` and ``provenance``. It is written
atomically (a temporary file renamed into place), so an interrupted run never
leaves a half-written result, and a heatmap PNG of R is written beside it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


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
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(**{k: d[k] for k in ("spec", "R", "baseline", "metrics", "costs", "provenance", "schema")},
                   extras=d.get("extras", {}))

    @property
    def run_name(self) -> str:
        return run_name(self.spec["stream"], self.spec["agent"], self.spec["seed"])


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (no separators, no '..')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")
    return cleaned or "unnamed"


def run_name(stream: str, agent: str, seed: int) -> str:
    return f"{safe_name(stream)}__{safe_name(agent)}__seed{int(seed)}"


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


def write_result(result: RunResult, out_dir: str | Path, heatmap: bool = True) -> Path:
    """Write ``<run name>.json`` (and ``.png``) into ``out_dir``; return the JSON path."""
    out = Path(out_dir)
    path = out / f"{result.run_name}.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1))
    if heatmap:
        write_heatmap(result, path.with_suffix(".png"))
    return path


def read_result(path: str | Path) -> RunResult:
    return RunResult.from_dict(json.loads(Path(path).read_text()))


def write_heatmap(result: RunResult, path: Path) -> None:
    """A PNG of R with the values printed in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    r = np.asarray(result.R)
    t = len(r)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * t, 0.8 + 0.6 * t), dpi=120)
    im = ax.imshow(r, vmin=0.0, vmax=max(1.0, float(r.max())), cmap="viridis")
    for i in range(t):
        for j in range(t):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if r[i, j] < 0.6 else "black")
    ax.set_xlabel("evaluated on experience j")
    ax.set_ylabel("after learning experience i")
    ax.set_xticks(range(t))
    ax.set_yticks(range(t))
    ax.set_title(f"{result.spec['agent']} on {result.spec['stream']} (seed {result.spec['seed']})", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
