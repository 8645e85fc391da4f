"""Every docstring example runs: the doctests of every module, imported under its installed name.

The rooms install as ``replaybench.<room>`` from their own folders, so the
modules are found by walking the installed package, not the file tree
(``pytest --doctest-modules`` would import ``agents/er.py`` a second time,
as ``agents.er``).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import replaybench


def _modules() -> list[str]:
    names = ["replaybench"]
    for info in pkgutil.walk_packages(replaybench.__path__, "replaybench."):
        names.append(info.name)
    for room in ("agents", "memories", "spiking", "streams", "leaderboards"):
        package = importlib.import_module(f"replaybench.{room}")
        names.append(package.__name__)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return sorted(set(names) - {"replaybench.__main__"})


MODULES = _modules()


def test_every_room_is_walked():
    rooms = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    assert {"agents", "memories", "spiking", "streams", "leaderboards", "runner", "metrics"} <= rooms


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples failed in {name}"
