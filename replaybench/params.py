"""Declarative parameter constraints and frozen configs.

Constraints are data attached to dataclass fields and checked in one place,
at construction, with one message shape (after scikit-learn's
``_param_validation``)::

    The 'capacity' parameter of ReservoirBuffer must be an int in the range
    [1, inf). Got 0 instead.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class SGDConfig(Config):
    ...     lr: float = param(0.1, Interval(float, 0, None, closed="neither"))
    ...     '''Learning rate.'''
    >>> SGDConfig.from_dict({"lr": 0.5}).lr
    0.5
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from replaybench.errors import ConfigError, one_line

_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a str"}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A numeric range. ``None`` bounds are infinite.

    Args:
        type: ``int`` or ``float`` (an ``int`` value is accepted for ``float``).
        low: Lower bound, or ``None``.
        high: Upper bound, or ``None``.
        closed: Which bounds belong to the range: "both", "left", "right" or
            "neither".
        infinite: Whether ``-inf``/``inf`` are accepted where a bound is
            ``None`` (e.g. a weight clamp that may be off). No
            hyperparameter accepts them otherwise, and none accepts NaN.
    """

    type: type
    low: float | None
    high: float | None
    closed: str = "both"
    infinite: bool = False

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        if self.type is float and not isinstance(value, numbers.Real):
            return False
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not self.infinite)):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and not right)))

    def describe(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        lb = "[" if self.closed in ("both", "left") and self.low is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{_TYPE_NAMES[self.type]} in the range {lb}{lo}, {hi}{rb}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A value from a fixed set of choices."""

    choices: tuple

    def __init__(self, *choices: Any) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    def accepts(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclasses.dataclass(frozen=True)
class InstanceOf:
    """A value of the given type(s), e.g. ``InstanceOf(bool)`` or ``InstanceOf(tuple)``."""

    types: tuple

    def __init__(self, *types: type) -> None:
        object.__setattr__(self, "types", tuple(types))

    def accepts(self, value: Any) -> bool:
        if bool not in self.types and isinstance(value, bool):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        names = " or ".join(_TYPE_NAMES.get(t, f"a {t.__name__}") for t in self.types)
        return names


@dataclasses.dataclass(frozen=True)
class Optional:
    """``None`` or a value accepted by ``inner``."""

    inner: Any

    def accepts(self, value: Any) -> bool:
        return value is None or self.inner.accepts(value)

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"


def check_param(owner: str, name: str, value: Any, constraint: Any) -> None:
    """Raise :class:`ConfigError` unless ``constraint`` accepts ``value``."""
    if not constraint.accepts(value):
        hint = ""
        if isinstance(constraint, OneOf) and isinstance(value, str):
            hint = did_you_mean(value, [c for c in constraint.choices if isinstance(c, str)])
        raise ConfigError(
            f"The {name!r} parameter of {owner} must be {constraint.describe()}. Got {value!r} instead.{hint}"
        )


def param(default: Any, constraint: Any = None, **field_kwargs: Any) -> Any:
    """A dataclass field with a default and a constraint checked at construction."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a frozen mapping as a config default")
    return dataclasses.field(default=default, metadata={"constraint": constraint}, **field_kwargs)


C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for frozen, validated configs.

    Subclasses declare fields with :func:`param`; every constraint is checked
    in ``__post_init__``. ``from_dict`` refuses unknown keys with a hint.
    """

    owner_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        owner = self.owner_name or type(self).__name__
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # TOML arrays arrive as lists
                object.__setattr__(self, f.name, tuple(value))
                value = tuple(value)
            constraint = f.metadata.get("constraint")
            if constraint is not None:
                check_param(owner, f.name, value, constraint)

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any] | None = None, *, owner: str | None = None) -> C:
        """Build from a mapping (a TOML table, CLI options), refusing unknown keys.

        ``owner`` names the thing configured in error messages (e.g. "agent 'er'").
        """
        merged = dict(values or {})
        owner = owner or cls.owner_name or cls.__name__
        check_known_keys(cls, merged, owner)
        try:
            return cls(**merged)
        except ConfigError as exc:
            if owner == (cls.owner_name or cls.__name__):
                raise
            raise ConfigError(str(exc).replace(f"of {cls.owner_name or cls.__name__}", f"of {owner}", 1)) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def check_known_keys(config_cls: type, values: Mapping[str, Any], owner: str) -> None:
    """Refuse a key that is not an init field of the dataclass ``config_cls``, with a hint."""
    known = [f.name for f in dataclasses.fields(config_cls) if f.init]
    for key in values:
        if key not in known:
            raise ConfigError(
                f"Unknown option {key!r} for {owner}.{did_you_mean(key, known)} "
                f"Known options: {', '.join(known) or '(none)'}."
            )


# --- plain frozen dataclasses as configs --------------------------------------------------------
def build_config(config_cls: type, values: Mapping[str, Any] | None = None, *, owner: str) -> Any:
    """Build a config from a mapping: a :class:`Config` subclass, or any frozen dataclass.

    A plain ``@dataclass(frozen=True)`` works as an agent's ``Config``: unknown
    keys are refused with a hint, TOML arrays become tuples, and every field's
    value (given or default) is checked against its annotation (int, float,
    bool, str, ``Literal``, tuples, ``Optional``/unions, mappings) with the
    same message shape as :func:`check_param`. Other annotations are not
    checked. A ``TypeError``/``ValueError`` from the dataclass itself (a
    missing field, its own ``__post_init__`` check) is a :class:`ConfigError`.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class MyConfig:
        ...     lr: float = 0.1
        ...     hidden: tuple[int, ...] = (64,)
        >>> build_config(MyConfig, {"hidden": [32, 32]}, owner="agent 'mine'").hidden
        (32, 32)
        >>> build_config(MyConfig, {"lr": "fast"}, owner="agent 'mine'")
        Traceback (most recent call last):
        ...
        replaybench.errors.ConfigError: The 'lr' parameter of agent 'mine' must be a float. Got 'fast' instead.
    """
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise ConfigError(f"The Config of {owner} must be a dataclass; got {config_cls!r}.")
    if not config_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise ConfigError(f"The Config of {owner} must be frozen: @dataclass(frozen=True).")
    values = dict(values or {})
    if issubclass(config_cls, Config):
        return config_cls.from_dict(values, owner=owner)
    check_known_keys(config_cls, values, owner)
    hints = _type_hints(config_cls, owner)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    for key, value in values.items():
        _check_annotated(owner, key, value, hints.get(key, Any))
    try:
        config = config_cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Building the Config of {owner} raised {one_line(exc)}.") from None
    for f in dataclasses.fields(config):
        if f.name not in values:
            _check_annotated(owner, f.name, getattr(config, f.name), hints.get(f.name, Any))
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of any dataclass config's fields (tuples as lists)."""
    if isinstance(config, Config):
        return config.to_dict()
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _type_hints(config_cls: type, owner: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception as exc:
        raise ConfigError(
            f"Cannot resolve the annotations of the Config of {owner}: {type(exc).__name__}: {exc}."
        ) from None


def _annotation_accepts(value: Any, tp: Any) -> bool | None:
    """Whether ``value`` fits annotation ``tp``; None where the annotation is not checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_annotation_accepts(value, a) for a in args]
        return any(v is True or v is None for v in verdicts)
    if origin is tuple or tp is tuple:
        if not isinstance(value, tuple):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_annotation_accepts(v, args[0]) is not False for v in value)
        return len(value) == len(args) and all(_annotation_accepts(v, a) is not False for v, a in zip(value, args))
    if origin in (dict, Mapping, collections.abc.Mapping) or tp in (dict, Mapping):
        return isinstance(value, Mapping)
    return None


def _describe_annotation(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if tp is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_annotation(a) for a in args)
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe_annotation(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a tuple of {len(args)}" if args else "a tuple"
    return getattr(tp, "__name__", repr(tp))


def _check_annotated(owner: str, name: str, value: Any, tp: Any) -> None:
    if _annotation_accepts(value, tp) is False:
        raise ConfigError(
            f"The {name!r} parameter of {owner} must be {_describe_annotation(tp)}. Got {value!r} instead."
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def parse_option(text: str) -> tuple[str, Any]:
    """Parse a CLI ``key=value`` option; the value is read as a TOML value.

    ``lr=0.1`` gives a float, ``hidden=[256, 256]`` a list, ``mode=online`` a
    string (bare words that are not TOML are taken as strings).
    """
    import tomllib

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"Expected an option as KEY=VALUE, got {text!r}.")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.replace("-", "_"), value
