"""Registers the built-in streams: the tables of ``standard.toml``."""

from __future__ import annotations

import tomllib
from pathlib import Path

from replaybench.registry import STREAMS

STANDARD_FILE = Path(__file__).with_name("standard.toml")


def _register_standard() -> None:
    with STANDARD_FILE.open("rb") as f:
        tables = tomllib.load(f)
    for name, table in tables.items():
        params = dict(table)
        builder = params.pop("builder")
        summary = params.pop("summary", "")
        STREAMS.register(name, builder, summary=summary, name=name, **params)


_register_standard()
