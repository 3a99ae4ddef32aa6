"""dict → typed dataclass, with every problem collected into one ``ConfigError``.

Supports nested dataclasses, unions of dataclasses told apart by their ``type: Literal[...]`` field,
``Optional``, ``Literal``, ``bool``/``int``/``float``/``str``, ``list`` of scalars and free-form ``dict``.
Unknown keys are errors with a "did you mean" hint. Per-field bounds live in the field's metadata
(``bounded(1024, ge=1)``) and are checked while coercing, so a renamed field keeps its check. Cross-field
rules live in ``__post_init__`` of the class that sees both fields; they run only when the fields under
them are valid, and every section's rules run, so one message lists everything that is wrong.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from vqfast.errors import ConfigError

_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def bounded(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, factory=None):
    """A dataclass field whose numeric value (each item, for lists) must satisfy the given bounds.
    ``None`` values (optional fields) are not checked."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _scalar(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, coerced) for bool/int/float/str; YAML gives '1e-4' as a string, so numeric strings are read."""
    if isinstance(value, bool) or value is None:
        return tp is bool and value is not None, value
    if tp is int:
        if isinstance(value, int):
            return True, value
        try:
            f = float(value) if isinstance(value, (float, str)) else None
        except ValueError:
            return False, value
        return (True, int(f)) if f is not None and f.is_integer() else (False, value)
    if tp is float:
        if isinstance(value, (int, float)):
            return True, float(value)
        try:
            return (True, float(value)) if isinstance(value, str) else (False, value)
        except ValueError:
            return False, value
    if tp is str:
        if isinstance(value, str):
            return True, value
        return (True, str(value)) if isinstance(value, (int, float)) else (False, value)
    return False, value


def _discriminated(members: list[type], value: dict, key: str, errors: list[str]):
    """Pick the union member whose tag (its ``type`` or ``kind`` Literal field) holds the value's tag; a value
    without the tag takes the first member (the default)."""
    tag_name = "type" if "type" in typing.get_type_hints(members[0]) else "kind"
    tag = value.get(tag_name, typing.get_args(typing.get_type_hints(members[0])[tag_name])[0])
    allowed = []
    for cls in members:
        choices = typing.get_args(typing.get_type_hints(cls)[tag_name])
        allowed += choices
        if tag in choices:
            return from_dict(cls, value, errors, prefix=key + ".")
    errors.append(f"{key}.{tag_name}={tag!r}: allowed values are {', '.join(repr(a) for a in allowed)}")
    return None


def _coerce_union(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None and len(args) < len(typing.get_args(tp)):
        return None
    if args and all(dataclasses.is_dataclass(a) for a in args):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping with a 'type' key, got {value!r}")
            return None
        return _discriminated(args, value, key, errors)
    for arg in args:
        trial: list[str] = []
        out = _coerce(value, arg, key, trial)
        if not trial:
            return out
    errors.append(f"{key}={value!r}: expected {_type_name(tp)}")
    return value


def _coerce_literal(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    if value not in typing.get_args(tp):
        errors.append(f"{key}={value!r}: allowed values are {', '.join(repr(a) for a in typing.get_args(tp))}")
    return value


def _coerce_list(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if not isinstance(value, (list, tuple)):
        errors.append(f"{key}={value!r}: expected {_type_name(tp)}")
        return value
    return [_coerce(v, args[0], f"{key}[{i}]", errors) if args else v for i, v in enumerate(value)]


_BY_ORIGIN = {Union: _coerce_union, types.UnionType: _coerce_union, Literal: _coerce_literal, list: _coerce_list,
              tuple: _coerce_list}


def _coerce(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    """``value`` as type ``tp`` (appending a message to ``errors`` when it is not one)."""
    by_origin = _BY_ORIGIN.get(typing.get_origin(tp))
    if by_origin is not None:
        return by_origin(value, tp, key, errors)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
            return None
        return from_dict(tp, value, errors, prefix=key + ".")
    if tp is Any:
        return value
    ok, out = (isinstance(value, dict), value) if tp is dict or typing.get_origin(tp) is dict else _scalar(value, tp)
    if not ok:
        errors.append(f"{key}={value!r}: expected {_type_name(tp)}")
    return out


def _check_bounds(value: Any, meta: typing.Mapping, key: str, errors: list[str]) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        for name, bound in meta.items():
            if name in _BOUNDS and not _BOUNDS[name][0](item, bound):
                errors.append(f"{key}={value!r}: must be {_BOUNDS[name][1]} {bound}")
                return


def from_dict(cls: type, data: dict, errors: list[str], prefix: str = ""):
    """Build ``cls`` from ``data``, appending every problem to ``errors`` (never raises for user input).
    Returns None when ``cls`` could not be built (its own problems are in ``errors``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    before = len(errors)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" — did you mean {prefix + close[0]!r}?" if close else ""
            errors.append(f"unknown key {prefix + str(key)!r}{hint} (allowed: {', '.join(sorted(fields))})")
            continue
        out = _coerce(value, hints[key], prefix + key, errors)
        _check_bounds(out, fields[key].metadata, prefix + key, errors)
        kwargs[key] = out
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"missing required key {prefix + name!r} ")
    if len(errors) > before:  # cross-field rules only run on valid fields; siblings are still checked
        return None
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a cross-field rule; its message names the dotted keys
        errors.append(str(exc))
        return None


def build(cls: type, data: dict, where: str):
    """``cls`` from ``data`` or one ``ConfigError`` listing every problem."""
    errors: list[str] = []
    out = from_dict(cls, data, errors)
    raise_if(errors, where)
    return out


def raise_if(errors: list[str], where: str) -> None:
    if errors:
        lines = "\n  - ".join(errors)
        raise ConfigError(f"invalid config {where}:\n  - {lines}")


def problems(*checks: tuple[bool, str]) -> None:
    """Raise one ConfigError naming every failed cross-field rule: ``problems((ok, "message"), ...)``."""
    failed = [message for ok, message in checks if not ok]
    if failed:
        raise ConfigError("; ".join(failed))
