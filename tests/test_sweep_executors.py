"""The distributed executors: a real local Ray cluster, and submitit in local mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from replaybench.sweep import SweepConfig, run_sweep

TINY = {"epochs": 1, "hidden": [16]}
RAISING = f"{Path(__file__).resolve().parent / 'test_sweep.py'}:RaisingAgent"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster of 2 CPUs for the module (starting Ray takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def grid(out: Path, executor: str, agents=("naive", "er"), seeds=(0, 1), **values) -> SweepConfig:
    return SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": list(agents),
            "seeds": list(seeds),
            "agent_options": TINY,
            "agent_options_by_agent": {"er": {"memory_size": 20}},
            "executor": executor,
            "out": str(out),
            **values,
        }
    )


@pytest.fixture(scope="module")
def inline_results(tmp_path_factory):
    report = run_sweep(grid(tmp_path_factory.mktemp("inline"), "inline"), show_progress=False, plots=False)
    assert len(report.results) == 4 and not report.failures
    return report.results


def test_ray_runs_a_2x2_grid_like_inline(ray_cluster, inline_results, tmp_path):
    report = run_sweep(grid(tmp_path, "ray"), show_progress=False, plots=False)
    assert set(report.results) == set(inline_results) and not report.failures
    for run_id, result in report.results.items():
        assert result.R == inline_results[run_id].R
        assert result.metrics == inline_results[run_id].metrics
        assert result.provenance["hardware"]["torch_threads"] == 1
    assert len({r.provenance["config"]["memory_size"] for r in report.results.values() if r.spec["agent"] == "er"}) == 1
    assert ray.is_initialized(), "a cluster the sweep did not start is left running"


def test_ray_records_a_raising_agent_as_failed(ray_cluster, tmp_path):
    report = run_sweep(grid(tmp_path, "ray", agents=(RAISING,), seeds=(0,)), show_progress=False, plots=False)
    (record,) = report.failures.values()
    assert record["kind"] == "raised" and "boom on purpose" in record["error"] and "Traceback" in record["traceback"]


def test_submitit_local_job_array_matches_inline(inline_results, tmp_path):
    cfg = grid(tmp_path / "out", "slurm", agents=("naive", RAISING), seeds=(1,), cluster="local", workers=2)
    report = run_sweep(cfg, show_progress=False, plots=False)
    (run_id,) = report.results
    assert report.results[run_id].R == inline_results[run_id].R
    (record,) = report.failures.values()
    assert record["kind"] == "raised" and "boom on purpose" in record["error"]
    assert len(list((tmp_path / "out" / ".submitit").glob("*_submitted.pkl"))) == 2  # one job per run
