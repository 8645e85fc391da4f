"""Collect what ``benchmarks/gpu_check.sh`` wrote into one summary: ``summary.json`` and a printed digest.

Reads the folder's ``parts.tsv`` (each part's exit status), ``cuda_tests.xml``
(JUnit), ``snn_<device>.log`` (one JSON line per measurement of
``benchmarks/snn_throughput.py``), ``run_<device>/`` (the runner's results
files) and ``forward.json``; writes ``snn_throughput.csv``, ``runner.json``
and ``summary.json`` beside them.

Usage::

    python benchmarks/gpu_check_summary.py gpu-check
"""

from __future__ import annotations

import csv
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PAPER = (
    "Saunders et al. 2019, 'Minibatch processing in spiking neural networks' (arXiv 1909.02549), on a GPU, "
    "100 -> 100 neurons, 1000 steps: B = 1024 gave about 990x the samples/s of B = 1 without learning "
    "(0.303 s at B = 1, 0.314 s at B = 1024) and about 409x with STDP (abstract: about 880x and 24x); "
    "a Diehl & Cook STDP epoch took about 90 min at B = 1 and 1-2 min at B >= 128"
)


def _parts(folder: Path) -> dict[str, dict[str, Any]]:
    rows = [line.split("\t") for line in (folder / "parts.tsv").read_text().splitlines() if line.strip()]
    return {name: {"exit": int(code), "state": state} for name, code, state in rows}


def _tests(folder: Path) -> dict[str, Any] | None:
    path = folder / "cuda_tests.xml"
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = [
        {"test": case.get("name"), "message": (bad.get("message") or "").splitlines()[0][:300]}
        for case in suite.iter("testcase")
        for bad in [case.find("failure"), case.find("error")]
        if bad is not None
    ]
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed}  # fmt: skip


def _snn(folder: Path) -> dict[str, Any]:
    rows = []
    for log in sorted(folder.glob("snn_*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
    if rows:
        with open(folder / "snn_throughput.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    rate = {(r["device"], r["neurons"], r["batch"]): r["samples_per_s"] for r in rows}
    scaling = {}
    for device, neurons in sorted({(d, n) for d, n, _ in rate}):
        batches = sorted(b for d, n, b in rate if (d, n) == (device, neurons))
        if batches and batches[0] == 1 and len(batches) > 1:
            top = batches[-1]
            scaling[f"{device}, {neurons} neurons: B={top} / B=1"] = (
                rate[device, neurons, top] / rate[device, neurons, 1]
            )
    speedup = {
        f"{neurons} neurons, B={batch}": rate[d, neurons, batch] / rate["cpu", neurons, batch]
        for d, neurons, batch in rate
        if d != "cpu" and ("cpu", neurons, batch) in rate
    }
    return {
        "rows": len(rows),
        "batch_scaling_samples_per_s": scaling,
        "device_over_one_cpu_thread_samples_per_s": speedup,
        "note": "CPU rates use one thread's CPU time (benchmarks/snn_throughput.py); device rates use wall time",
        "paper": PAPER,
    }


def _runs(folder: Path) -> dict[str, Any]:
    runs = {}
    for out in sorted(folder.glob("run_*")):
        if not out.is_dir():
            continue
        for path in sorted(out.glob("*.json")):
            result = json.loads(path.read_text())
            if "R" in result:
                runs[out.name.removeprefix("run_")] = result
    summary: dict[str, Any] = {
        device: {
            "stream": r["spec"]["stream"],
            "wall_seconds": r["costs"]["wall_seconds"],
            "learn_seconds": r["costs"]["learn_seconds"],
            "acc": r["metrics"]["acc"],
            "peak_cuda_mb": r["costs"].get("peak_cuda_mb"),
        }
        for device, r in runs.items()
    }
    others = [d for d in runs if d != "cpu"]
    if "cpu" in runs and others:
        device = others[0]
        cpu_R, dev_R = runs["cpu"]["R"], runs[device]["R"]
        summary["cpu_over_device_wall_time"] = (
            runs["cpu"]["costs"]["wall_seconds"] / runs[device]["costs"]["wall_seconds"]
        )
        summary["max_abs_R_difference"] = max(abs(a - b) for ra, rb in zip(cpu_R, dev_R) for a, b in zip(ra, rb))
    (folder / "runner.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(folder: str) -> None:
    root = Path(folder)
    forward = root / "forward.json"
    summary = {
        "parts": _parts(root),
        "cuda_tests": _tests(root),
        "snn_throughput": _snn(root),
        "runner": _runs(root),
        "forward": json.loads(forward.read_text()) if forward.is_file() else None,
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gpu-check")
