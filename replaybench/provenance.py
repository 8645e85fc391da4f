"""Where a result came from: software, hardware, config and source hashes.

Every run's provenance names the package version, the git commit, the
stream's fingerprint and version, the agent's full config, the seed, the
library versions and the hardware. Submissions add two hashes:

- :func:`config_hash`: SHA-256 of the agent's full, validated config as
  sorted JSON;
- :func:`source_hash` over :func:`agent_source_files`: the file that defines
  the agent class plus every module it imports from its own package,
  directly or through each other. A built-in agent also counts the rooms it
  composes (``replaybench.memories``, ``replaybench.spiking``); a
  ``file.py:Class`` agent counts the modules of its own folder. The spine is
  not hashed: the git commit covers it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.registry import USER_MODULE_PREFIX

FIRST_PARTY = "replaybench"
"""Every module of this package an agent imports, transitively, is hashed with it: its rooms (memories,
spiking) and the contract and helpers it builds on (params, protocols, evaluation...)."""


def git_commit() -> str | None:
    """The commit of the replaybench checkout, with '+dirty' if modified; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def hardware() -> dict[str, Any]:
    import torch

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": None,
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def provenance(
    *,
    stream_fingerprint: str,
    stream_version: str,
    config: dict[str, Any],
    seed: int,
    preset: str | None = None,
    scenario: str | None = None,
) -> dict[str, Any]:
    """Everything needed to say where a result came from.

    ``preset``: the board preset the options came from; ``scenario``: the stream's, which decides
    whether FWT is defined (so a store can recompute every metric from R).
    """
    import numpy
    import torch

    from replaybench import __version__

    return {
        "replaybench_version": __version__,
        "git_commit": git_commit(),
        "stream_fingerprint": stream_fingerprint,
        "stream_version": stream_version,
        **({"scenario": scenario} if scenario is not None else {}),
        "config": config,
        "seed": seed,
        **({"preset": preset} if preset is not None else {}),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of ``config`` as sorted JSON."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()


def source_hash(files: Mapping[str, str]) -> str:
    """SHA-256 over the per-file digests of :func:`agent_source_files`."""
    return hashlib.sha256(json.dumps(dict(files), sort_keys=True).encode()).hexdigest()


def _imported_modules(path: Path, module_name: str) -> set[str]:
    """Absolute names of what ``path`` imports (relative imports resolved; ``from m import x`` gives m and m.x)."""
    package = module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _installed_module_file(name: str) -> Path | None:
    """The source file of module ``name``, or None if it is not a module (e.g. a class)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _module_key(name: str, path: Path) -> str:
    """A machine-independent key: the module's path inside its package tree."""
    stem = name.replace(".", "/")
    return f"{stem}/__init__.py" if path.name == "__init__.py" else f"{stem}.py"


def agent_source_files(agent_cls: type) -> dict[str, str]:
    """SHA-256 of each source file ``agent_cls`` runs, keyed by its path inside its package (or folder).

    The files are the class's own module and every module it imports, transitively, that is part of
    its own package, or of replaybench (:data:`FIRST_PARTY`); an agent loaded from ``file.py`` also
    counts the modules of its folder that it imports.
    """
    main_file = Path(inspect.getsourcefile(agent_cls) or "").resolve()
    if not main_file.is_file():
        raise ConfigError(f"Cannot find the source file of agent class {agent_cls.__qualname__}.")
    module_name = agent_cls.__module__
    resolve: Callable[[str], Path | None]

    def first_party(name: str) -> Path | None:
        if name == FIRST_PARTY or name.startswith(FIRST_PARTY + "."):
            return _installed_module_file(name)
        return None

    if module_name.startswith(USER_MODULE_PREFIX):  # loaded from file.py: same-folder modules count
        folder = main_file.parent

        def resolve(name: str) -> Path | None:
            rel = Path(*name.split("."))
            for candidate in (folder / rel.with_suffix(".py"), folder / rel / "__init__.py"):
                if candidate.is_file():
                    return candidate.resolve()
            return first_party(name)

        def key(name: str, path: Path) -> str:
            return str(path.relative_to(folder)) if path.is_relative_to(folder) else _module_key(name, path)
    else:
        own_package = module_name.split(".")[0]

        def resolve(name: str) -> Path | None:
            if name == own_package or name.startswith(own_package + "."):
                return _installed_module_file(name)
            return first_party(name)

        key = _module_key
    files: dict[Path, str] = {}
    pending = [(main_file, module_name)]
    while pending:
        path, name = pending.pop()
        if path in files:
            continue
        files[path] = name
        for imported in _imported_modules(path, name):
            candidate = resolve(imported)
            if candidate is not None and candidate not in files:
                pending.append((candidate, imported))
    return {key(name, path): hashlib.sha256(path.read_bytes()).hexdigest() for path, name in sorted(files.items())}
