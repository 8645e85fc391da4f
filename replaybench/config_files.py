"""Config files: run configs (``--config``) and the checks every command shares.

A run config is TOML::

    seeds = [0, 1, 2]
    out = "results"
    [agent]            # options for every agent
    epochs = 2
    [agents.er]        # options for one agent (win over [agent])
    memory_size = 1000
    [stream]           # stream builder options
    train_per_class = 1000

``-o KEY=VALUE`` on the command line wins over both tables. Unknown keys,
values of the wrong type, a file that is not UTF-8 TOML and a missing file
are each a one-line :class:`~replaybench.errors.ConfigError`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.params import parse_option

RUN_CONFIG_KEYS = ("agent", "agents", "stream", "seeds", "out")
MAX_SEED = 2**32 - 1
"""Seeds are NumPy's legacy range: every generator (Python, NumPy, torch) takes them whole."""


def load_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file; a missing, non-UTF-8 or malformed file is one line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what.capitalize()} not found: {p}.") from None
    except IsADirectoryError:
        raise ConfigError(f"{what.capitalize()} {p} is a folder, not a TOML file.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what.capitalize()} {p} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed {what} {p}: {exc}.") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a run config; unknown keys and values of the wrong shape are refused here."""
    cfg = load_toml(path)
    for key, value in cfg.items():
        if key not in RUN_CONFIG_KEYS:
            raise ConfigError(f"Unknown key {key!r} in {path}; expected one of {', '.join(RUN_CONFIG_KEYS)}.")
        if key in ("agent", "agents", "stream") and not isinstance(value, dict):
            raise ConfigError(f"Key {key!r} in {path} must be a table, e.g. [{key}].")
        if key == "out" and not isinstance(value, str):
            raise ConfigError(f"Key 'out' in {path} must be a folder name (a string). Got {value!r} instead.")
    for name, table in cfg.get("agents", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"Key 'agents.{name}' in {path} must be a table, e.g. [agents.{name}].")
    if "seeds" in cfg:
        check_seeds(cfg["seeds"], where=str(path))
    return cfg


def check_seeds(seeds: Any, *, where: str = "the command") -> list[int]:
    """A non-empty list of distinct seeds in [0, 2**32 - 1]; ``where`` names their source in errors."""
    if not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"The seeds ({where}) must be a list of ints, e.g. [0, 1, 2]. Got {seeds!r} instead.")
    if not seeds:
        raise ConfigError(f"The seeds ({where}) are empty; give at least one seed.")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"The seeds ({where}) must be ints in the range [0, {MAX_SEED}]. Got {seed!r} instead.")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ConfigError(f"The seeds ({where}) repeat {repeated}; each seed runs once.")
    return list(seeds)


def options_for(agent: str, cfg: Mapping[str, Any], cli_options: Sequence[str]) -> dict[str, Any]:
    """Agent options: file-wide, then per-agent, then ``-o key=value`` (last wins)."""
    opts = dict(cfg.get("agent", {}))
    opts.update(cfg.get("agents", {}).get(agent, {}))
    opts.update(parse_option(o) for o in cli_options)
    return opts
