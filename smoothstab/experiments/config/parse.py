"""Frozen dataclasses from TOML tables, and ``key=value`` overrides, both type-checked.

Every stage's settings are a frozen dataclass; :func:`dataclass_from_dict` fills one from a
TOML table (unknown keys are errors, values are checked against the field types) and
:func:`apply_overrides` applies the CLI's ``--set key=value`` on top (dotted keys reach nested
dataclasses). Problems are one-line :class:`ConfigError` messages naming the key; an unknown key
names the closest known one. A key renamed is listed in its dataclass's ``RENAMED``
(``{old: new}``): the old name still works, with a warning, until version 1.0.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from smoothstab.experiments.config.guards import read_config_text
from smoothstab.renames import warn_renamed

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config file, key or value; the CLI prints it on one line and exits with 2."""


def load_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``, read once (UTF-8, else one line naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: expected a TOML file, found nothing at {path}")
    try:
        return tomllib.loads(read_config_text(path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML ({e})") from None


def dataclass_from_dict(cls: type[T], mapping: Mapping[str, Any], *, where: str = "") -> T:
    """An instance of the dataclass ``cls`` with the fields given in ``mapping`` (others keep
    their defaults). ``where`` prefixes key names in errors, e.g. ``"train"``."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    mapping = _renamed(cls, mapping, where)
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            unknown_key(_key(where, unknown[0]), fields, f"{where}." if where else "")
        )
    values = {k: coerce(v, hints[k], _key(where, k)) for k, v in mapping.items()}
    return _construct(cls, values, where)


def apply_overrides(obj: T, overrides: Sequence[str], *, prefix: str = "") -> T:
    """``obj`` with each ``"key=value"`` applied; the value is read as a TOML value (bare words
    are strings, ``none`` clears an optional field) and checked against the field's type.

    ``prefix``: the table ``obj`` is in the full config, e.g. ``"train"``; a key may then name
    it (``train.epochs``, as ``smoothstab run`` spells it) or not (``epochs``). Errors name the
    key as it was given."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        path = key.split(".")
        if prefix and len(path) > 1 and path[0] == prefix:
            path = path[1:]
        obj = _override(obj, path, text.strip(), key)
    return obj


def unknown_key(name: str, known: Iterable[str], parent: str = "") -> str:
    """The message for the unknown key ``name``: the closest of ``known`` (spelt with its
    table, ``parent``) if one is close, else all of them."""
    known = list(known)
    close = difflib.get_close_matches(name.rpartition(".")[2], known, n=1)
    if close:
        return f"{name}: unknown key; did you mean {parent}{close[0]}?"
    return f"{name}: unknown key; expected one of {', '.join(known)}"


def _override(obj: Any, path: list[str], text: str, full: str) -> Any:
    fields = {f.name for f in dataclasses.fields(obj) if f.init}
    where = ".".join(full.split(".")[: -len(path)])  # the table holding this key, if any
    path = [_new_key(type(obj), path[0], where), *path[1:]]
    if path[0] not in fields:
        given = full[: len(full) - len(".".join(path))]  # the tables before it, as typed
        raise ConfigError(unknown_key(given + path[0], sorted(fields), given))
    if len(path) > 1:
        inner = getattr(obj, path[0])
        if not dataclasses.is_dataclass(inner):
            raise ConfigError(f"{full}: {path[0]} has no sub-keys")
        value = _override(inner, path[1:], text, full)
    else:
        tp = typing.get_type_hints(type(obj))[path[0]]
        value = coerce(parse_value(text, tp), tp, full)
    return _construct(type(obj), {**_init_values(obj), path[0]: value}, where)


def _new_key(cls: type, key: str, where: str = "") -> str:
    """``key`` as ``cls`` now names it: a renamed key (``cls.RENAMED``) warns and gives the
    new name, any other comes back as it is."""
    new = getattr(cls, "RENAMED", {}).get(key)
    if new is None:
        return key
    warn_renamed(_key(where, key), _key(where, new), noun="key")
    return new


def _renamed(cls: type, mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        new = _new_key(cls, key, where)
        if new != key and new in mapping:
            raise ConfigError(f"{_key(where, key)}: the old name of {_key(where, new)}; give one")
        out[new] = value
    return out


def _init_values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def parse_value(text: str, tp: Any) -> Any:
    """A ``--set`` value: ``none`` for optional fields, raw text for string fields, else TOML."""
    args = _union_args(tp)
    if text.lower() in ("none", "null") and type(None) in args:
        return None
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as digits or /data/cifar
    return text if str in args and not isinstance(value, str) else value


def coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted for floats, lists
    for tuples, tables for nested dataclasses); a :class:`ConfigError` names ``name``."""
    if tp is Any:
        return value
    args = _union_args(tp)
    if len(args) > 1:
        for arg in args:
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")
    return _coerce_one(value, tp, name)


def _coerce_one(value: Any, tp: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) and value is None:
        return None
    if origin is typing.Literal and value in args:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return value if isinstance(value, tp) else dataclass_from_dict(tp, value, where=name)
    if origin in (tuple, list) and isinstance(value, list | tuple):
        return origin(_coerce_items(value, args, name, fixed=origin is tuple))
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if tp is dict and isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")


def _coerce_items(value: Sequence, args: tuple, name: str, *, fixed: bool) -> list:
    # tuple[A, B] has one type per position; tuple[A, ...] and list[A] one for all.
    if fixed and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        kinds = list(args)
    else:
        kinds = [args[0] if args else Any] * len(value)
    return [coerce(v, k, f"{name}[{i}]") for i, (v, k) in enumerate(zip(value, kinds, strict=True))]


def _construct(cls: type[T], values: dict[str, Any], where: str) -> T:
    try:
        return cls(**values)
    except ValueError as e:  # a __post_init__ check: still a config problem, named in full
        message = str(e)
        field = message.split(":", 1)[0]
        if where and field in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"{where}.{message}") from None  # e.g. attribution.n_samples: ...
        raise ConfigError(f"{where + ': ' if where else ''}{message}") from None


def _union_args(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


FREE = "free"  # field metadata: the value does not change any result


def free(default: Any) -> Any:
    """A dataclass field whose value changes no result (a device, a worker count, a chunk size):
    a run directory may be resumed with another value."""
    return dataclasses.field(default=default, metadata={FREE: True})


def free_keys(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of the :func:`free` fields of ``cls`` and its nested config dataclasses."""
    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        if f.metadata.get(FREE):
            out.add(prefix + f.name)
        elif dataclasses.is_dataclass(hints[f.name]):
            out |= free_keys(hints[f.name], f"{prefix}{f.name}.")
    return out


def at_least(obj: Any, minimum: float, *names: str) -> None:
    """Each named field of ``obj`` is ``None`` or ``>= minimum`` (NaN fails), else ValueError."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value >= minimum:  # `not >=` also catches NaN
            kind = "an integer" if isinstance(value, int) else "a number"
            raise ValueError(f"{name}: expected {kind} >= {minimum}, got {value}")


def to_toml(obj: DataclassInstance, prefix: str = "") -> str:
    """A config dataclass as TOML (scalars, lists, nested tables, arrays of tables)."""
    scalars, tables = [], []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            tables.append(f"[{key}]\n" + to_toml(value, key))
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            tables += [f"[[{key}]]\n" + to_toml(v, key) for v in value]
        elif value is not None:
            scalars.append(f"{f.name} = {_toml_value(value)}")
    return (
        "\n".join(scalars)
        + ("\n\n" if scalars and tables else "\n" if scalars else "")
        + "\n".join(tables)
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"config: cannot write {value!r} as TOML")
