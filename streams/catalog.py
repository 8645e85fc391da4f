"""Registers the built-in streams: the tables of every ``*.toml`` file here."""

from __future__ import annotations

import tomllib
from pathlib import Path

from replaybench.registry import STREAMS

STREAM_FILES = sorted(Path(__file__).parent.glob("*.toml"))


def _register(path: Path) -> None:
    with path.open("rb") as f:
        tables = tomllib.load(f)
    for name, table in tables.items():
        params = dict(table)
        builder = params.pop("builder")
        summary = params.pop("summary", "")
        STREAMS.register(name, builder, summary=summary, name=name, **params)


for _path in STREAM_FILES:
    _register(_path)
