"""The one error type for a user's mistake.

Everything a user can get wrong (an unknown name, a malformed config, a
missing dataset, a diverging model) raises :class:`ReplaybenchError` or a
subclass. The CLI turns it into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class ReplaybenchError(Exception):
    """A user-facing error whose message fits on one line."""


class ConfigError(ReplaybenchError, ValueError):
    """A parameter, option or config file is invalid."""


class UnknownNameError(ReplaybenchError, KeyError):
    """A stream, agent or other registered name does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataMissingError(ReplaybenchError, FileNotFoundError):
    """A dataset is not on disk and may not be downloaded."""


class DataCorruptError(ReplaybenchError):
    """A dataset file exists but cannot be parsed."""


class DivergenceError(ReplaybenchError, FloatingPointError):
    """A loss or a dynamical state stopped being finite."""


class AgentError(ReplaybenchError):
    """An agent raised while learning or being evaluated."""


class MissingExtraError(ReplaybenchError, ImportError):
    """A feature's optional package (one of replaybench's extras) is not installed."""


def require_extra(module: str, extra: str, feature: str, *, package: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or fail on one line naming the extra that installs it.

    Call it where a feature is planned (an executor made, a config checked), so a missing package
    stops the command before any work. ``package`` is the name pip knows, where it is not the
    module's (``avalanche-lib`` for ``avalanche``).

    Example:
        >>> require_extra("json", "none", "this doctest").__name__
        'json'

    Raises:
        MissingExtraError: "the Ray executor needs the 'ray' package: pip install 'replaybench[ray]'".
    """
    package = package or module.split(".")[0]
    hint = f"pip install 'replaybench[{extra}]'"
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Not installed (the module or a parent is what is missing), or installed but broken inside.
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise MissingExtraError(f"{feature} needs the {package!r} package: {hint}") from None
        raise MissingExtraError(
            f"{feature} needs {package!r}, which failed to import ({one_line(exc)}): {hint}"
        ) from None


def one_line(exc: BaseException, *, with_type: bool = True) -> str:
    """``Type: first line of the message``: an exception kept to one line for the CLI."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not with_type:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
