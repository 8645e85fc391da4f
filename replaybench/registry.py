"""Registries of named streams and agents, built from frozen specs.

A spec maps a name to an entry point (``"package.module:attr"``) plus default
keyword arguments; nothing is imported until the name is used. Built-in rooms
register themselves through the ``replaybench.registrations`` entry-point
group (see ``pyproject.toml``); third parties add single names through the
``replaybench.agents`` / ``replaybench.streams`` groups, loaded lazily, and a
plugin that fails to load is named in the error.

Example:
    >>> AGENTS.spec("naive").entry_point
    'replaybench.agents.naive:NaiveAgent'
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from replaybench.errors import ConfigError, UnknownNameError, one_line
from replaybench.params import did_you_mean


@dataclass(frozen=True)
class Spec:
    """A registered name: where to find it and the defaults to call it with."""

    name: str
    entry_point: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


USER_MODULE_PREFIX = "_replaybench_user_"
"""Module names given to ``path/to/file.py`` entry points when they are imported."""


def load_entry_point(entry_point: str) -> Any:
    """Import ``"module:attr"`` or ``"path/to/file.py:attr"``.

    Any failure (a missing file, a relative module name, a module that raises
    while it is imported, a missing attribute) is a :class:`ConfigError` that
    names the entry point and the exception, on one line.
    """
    target, sep, attr = entry_point.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"Expected 'module:Name' or 'file.py:Name', got {entry_point!r}.")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"No such file: {target}.")
        module_name = f"{USER_MODULE_PREFIX}{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"Cannot import {target!r} for {entry_point!r}.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ConfigError(f"Importing {target!r} for {entry_point!r} raised {one_line(exc)}.") from exc
    else:
        if target.startswith(".") or not all(part.isidentifier() for part in target.split(".")):
            raise ConfigError(
                f"Expected an absolute module name before ':' in {entry_point!r}, e.g. 'mypackage.agents:MyAgent'."
            )
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(
                f"Cannot import {target!r} for {entry_point!r}: {one_line(exc, with_type=False)}."
            ) from exc
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ConfigError(f"Importing {target!r} for {entry_point!r} raised {one_line(exc)}.") from exc
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"{target!r} has no attribute {attr!r}.") from None
    return obj


class Registry:
    """Names of one kind of thing (streams or agents)."""

    def __init__(self, kind: str, plugin_group: str) -> None:
        self.kind = kind
        self._plugin_group = plugin_group
        self._specs: dict[str, Spec] = {}
        self._families: dict[str, Spec] = {}
        self._loaded_builtins = False

    def register(self, name: str, entry_point: str, /, *, summary: str = "", **kwargs: Any) -> None:
        """Register ``name``. A name ending in ``":*"`` registers a family:
        ``"avalanche:*"`` matches ``"avalanche:EWC"`` and passes
        ``variant="EWC"`` along with ``kwargs``."""
        spec = Spec(name, entry_point, kwargs, summary)
        if name.endswith(":*"):
            self._families[name[:-1]] = spec
        else:
            if name in self._specs and self._specs[name] != spec:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._specs[name] = spec

    def names(self) -> list[str]:
        """Every registered name, families shown as ``prefix:*``."""
        self._load_builtins()
        return sorted(self._specs) + sorted(f"{p}*" for p in self._families)

    def specs(self) -> list[Spec]:
        self._load_builtins()
        return [self._specs[n] for n in sorted(self._specs)] + [self._families[p] for p in sorted(self._families)]

    def __contains__(self, name: str) -> bool:
        try:
            self.spec(name)
        except (UnknownNameError, ConfigError):
            return False
        return True

    def spec(self, name: str) -> Spec:
        """The spec for ``name``; unknown names get a hint and the known list."""
        self._load_builtins()
        if name in self._specs:
            return self._specs[name]
        prefix, sep, variant = name.partition(":")
        if sep and f"{prefix}:" in self._families:
            family = self._families[f"{prefix}:"]
            if not variant:
                raise UnknownNameError(f"Give a variant after {prefix}:, e.g. {family.summary}")
            return Spec(name, family.entry_point, {**family.kwargs, "variant": variant}, family.summary)
        if sep and prefix and variant:  # "package.module:Class" or "path/agent.py:Class"
            return Spec(name, name, {}, "user-supplied")
        known = self.names()
        raise UnknownNameError(f"Unknown {self.kind} {name!r}.{did_you_mean(name, known)} Known: {', '.join(known)}.")

    def load(self, name: str) -> tuple[Any, Spec]:
        """Import and return the object behind ``name`` with its spec."""
        spec = self.spec(name)
        return load_entry_point(spec.entry_point), spec

    def _load_builtins(self) -> None:
        if self._loaded_builtins:
            return
        self._loaded_builtins = True
        for ep in _entry_points("replaybench.registrations"):
            try:
                ep.load()
            except Exception as exc:  # name the plugin instead of failing obscurely
                raise ConfigError(f"Plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        for ep in _entry_points(self._plugin_group):
            if ep.name not in self._specs:
                self.register(ep.name, ep.value, summary=f"plugin from {ep.value}")


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)


STREAMS = Registry("stream", "replaybench.streams")
AGENTS = Registry("agent", "replaybench.agents")
