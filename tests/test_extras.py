"""The lean install: optional packages sit behind extras, and a missing one fails on one line naming it.

The metadata is built from this checkout's pyproject.toml by setuptools in a temporary folder, as
``pip install`` would build it: the editable install's own metadata is written only on reinstall,
so reading it with ``importlib.metadata`` would test whatever the venv was installed from.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import replaybench.sweep
from replaybench.cli import main
from replaybench.errors import MissingExtraError, require_extra
from replaybench.executors import EXECUTOR_EXTRAS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / d for d in ("replaybench", "agents", "streams", "memories", "spiking", "leaderboards")]
OPTIONAL = {"ray", "submitit", "avalanche-lib", "wandb", "minigrid", "optuna"}
"""Distributions a core install must not pull."""


@pytest.fixture(scope="module")
def requirements(tmp_path_factory) -> list[Requirement]:
    """Requires-Dist of the wheel metadata setuptools builds from this checkout."""
    tree = tmp_path_factory.mktemp("metadata")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    for folder in SOURCES:  # setuptools checks the package folders exist
        shutil.copytree(folder, tree / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "out").mkdir()
    code = "from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('out'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    dist_info = done.stdout.strip().splitlines()[-1]
    metadata = email.parser.Parser().parsestr((tree / "out" / dist_info / "METADATA").read_text())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist")]


def _name(req: Requirement) -> str:
    return req.name.lower().replace("_", "-")


def _installs(requirements: list[Requirement], extras: set[str]) -> set[str]:
    """Distributions ``pip install 'replaybench[extras]'`` asks for, self-references followed."""
    names: set[str] = set()
    seen: set[str] = set()
    todo = set(extras)
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for req in requirements:
            if req.marker is None or not req.marker.evaluate({"extra": extra}):
                continue
            if _name(req) == "replaybench":
                todo |= req.extras - seen
            else:
                names.add(_name(req))
    return names


def test_core_requirements_hold_no_optional_package(requirements):
    core = {_name(r) for r in requirements if r.marker is None}
    assert core & OPTIONAL == set()
    assert {"torch", "scikit-learn", "gymnasium", "pandas", "mlxtend"} <= core


def test_all_installs_every_optional_package_but_not_the_dev_tools(requirements):
    everything = _installs(requirements, {"all"})
    assert everything >= OPTIONAL
    assert everything.isdisjoint({"pytest", "mkdocs"})


def _require_extra_calls() -> list[tuple[str, str]]:
    """(module, extra) of every require_extra call with literal arguments, and of every executor."""
    calls = list({(m, e) for m, e, _ in EXECUTOR_EXTRAS.values()})
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require_extra":
                    args = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
                    if len(args) == 2:
                        calls.append((args[0], args[1]))
    return sorted(set(calls))


def test_every_require_extra_names_an_extra_that_installs_its_package(requirements):
    calls = _require_extra_calls()
    assert {extra for _, extra in calls} >= {"ray", "slurm", "avalanche", "wandb", "minigrid", "tune"}
    providers = importlib.metadata.packages_distributions()
    for module, extra in calls:
        wanted = {d.lower() for d in providers[module.split(".")[0]]}
        assert wanted & _installs(requirements, {extra}), f"replaybench[{extra}] does not install {module}"


def _hide(monkeypatch, package: str) -> None:
    """Make ``import package`` (and its submodules, even ones already imported) raise ImportError."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


def _one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_run_on_ray_without_ray_names_the_extra(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "ray")
    argv = ["run", "--stream", "split-digits", "--agent", "naive", "--executor", "ray", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert _one_line_error(capsys) == (
        "replaybench: error: the Ray executor needs the 'ray' package: pip install 'replaybench[ray]'"
    )


def test_sweep_on_slurm_without_submitit_fails_before_any_work(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "submitit")

    def expand_grid(config):
        raise AssertionError("the sweep was planned before its executor was checked")

    monkeypatch.setattr(replaybench.sweep, "expand_grid", expand_grid)
    out = tmp_path / "sweep"
    argv = ["sweep", "--streams", "split-digits", "--agents", "naive", "--executor", "slurm", "--out", str(out)]
    assert main(argv) == 2
    assert "pip install 'replaybench[slurm]'" in _one_line_error(capsys)
    assert not out.exists()


def test_avalanche_agent_without_avalanche_names_the_extra(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "avalanche")
    argv = ["run", "--stream", "split-digits", "--agent", "avalanche:Naive", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert _one_line_error(capsys).endswith("the 'avalanche-lib' package: pip install 'replaybench[avalanche]'")


def test_wandb_flag_without_wandb_names_the_extra(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "wandb")
    argv = ["run", "--stream", "split-digits", "--agent", "naive", "--wandb", "offline", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "pip install 'replaybench[wandb]'" in _one_line_error(capsys)


def test_tune_without_optuna_names_the_extra(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "optuna")
    argv = ["leaderboard", "tune", "quick", "--agent", "naive", "--dry-run", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "pip install 'replaybench[tune]'" in _one_line_error(capsys)


def test_a_broken_install_is_told_apart_from_a_missing_one(monkeypatch, tmp_path):
    (tmp_path / "broken_extra_pkg").mkdir()
    (tmp_path / "broken_extra_pkg" / "__init__.py").write_text("import missing_dependency_of_broken_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as info:
        require_extra("broken_extra_pkg", "demo", "the demo")
    message = str(info.value)
    assert "failed to import" in message and "missing_dependency_of_broken_pkg" in message
    assert message.endswith("pip install 'replaybench[demo]'") and "\n" not in message
    assert isinstance(info.value, ImportError)  # callers that catch ImportError keep working
