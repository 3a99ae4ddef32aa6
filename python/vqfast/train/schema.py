"""Generic dict → typed dataclass conversion with all errors collected into one message.

Supports nested dataclasses, ``Optional``, ``Literal``, ``bool``/``int``/``float``/``str``, ``list``/``tuple``
of scalars, and ``dict`` (free-form). Unknown keys are errors with a "did you mean" hint.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from vqfast.train.errors import ConfigError

_MISSING = object()


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


def _coerce(value: Any, tp: Any, key: str, errors: list[str], where: str) -> Any:
    origin = typing.get_origin(tp)
    bad = f"{key}={value!r} ({where}): expected {_type_name(tp)}"
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, arg, key, trial, where)
            if not trial:
                return out
        errors.append(bad)
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(f"{key}={value!r} ({where}): allowed values are "
                          f"{', '.join(repr(a) for a in typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if isinstance(value, (list, tuple)):
            items = [_coerce(v, args[0], f"{key}[{i}]", errors, where) if args else v for i, v in enumerate(value)]
            return list(items)
        errors.append(bad)
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(bad)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{key} ({where}): expected a mapping of {tp.__name__} keys, got {value!r}")
            return tp()
        return from_dict(tp, value, errors, where, prefix=key + ".")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        errors.append(bad)
        return value
    if tp is int:
        if isinstance(value, bool):
            errors.append(bad)
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str):
            try:
                f = float(value)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
            errors.append(bad)
        else:
            errors.append(bad)
        return value
    if tp is float:
        if isinstance(value, bool):
            errors.append(bad)
        elif isinstance(value, (int, float)):
            return float(value)
        elif isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                errors.append(bad)
        else:
            errors.append(bad)
        return value
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        errors.append(bad)
        return value
    return value


def from_dict(cls: type, data: dict, errors: list[str], where: str, prefix: str = ""):
    """Build ``cls`` from ``data``; append every problem to ``errors`` (never raises for user input)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" — did you mean {prefix + close[0]!r}?" if close else ""
            errors.append(f"unknown key {prefix + str(key)!r} in {where}{hint} (allowed: {', '.join(sorted(fields))})")
            continue
        kwargs[key] = _coerce(value, hints[key], prefix + key, errors, where)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"missing required key {prefix + name!r} in {where}")
    if errors:
        try:
            return cls(**kwargs)
        except Exception:
            return None
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError, TypeError) as exc:
        errors.append(f"{prefix.rstrip('.') or 'config'} ({where}): {exc}")
        return None


def raise_if(errors: list[str], where: str) -> None:
    if errors:
        lines = "\n  - ".join(errors)
        raise ConfigError(f"invalid config {where}:\n  - {lines}")
