"""Typed conversion between JSON values and the protocol dataclasses.

`from_dict` validates incoming params against a dataclass's annotations so handlers get
well-typed objects; `to_json` turns results back into plain JSON values; `field_paths`
lists a dataclass's fields for the printed protocol spec.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Dict, List, Type, TypeVar, Union

T = TypeVar("T")
_NONE_TYPE = type(None)


class ConversionError(ValueError):
    """A JSON value does not match the declared type; `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__("%s %s" % (path, message))
        self.path = path


def from_dict(cls: Type[T], data: Any, path: str = "params") -> T:
    """Build dataclass `cls` from a JSON object, checking every field's type.

    Unknown keys are ignored (clients may send more than we understand); missing
    required fields and ill-typed values raise ConversionError naming the field.
    """
    if not isinstance(data, dict):
        raise ConversionError(path, "must be an object, got %s" % _json_type(data))
    hints = typing.get_type_hints(cls)
    kwargs: Dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init:
            continue
        field_path = "%s.%s" % (path, field.name)
        if field.name in data:
            kwargs[field.name] = _convert(hints[field.name], data[field.name], field_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConversionError(field_path, "is required")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and _NONE_TYPE in args:
            return None
        options = [a for a in args if a is not _NONE_TYPE]
        if len(options) == 1 and typing.get_origin(options[0]) in (list, dict):
            # Optional container: report the offending element, not just the container.
            return _convert(options[0], value, path)
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return _convert(arg, value, path)
            except ConversionError:
                continue
        raise ConversionError(path, "must be %s, got %s" % (describe_type(tp), _json_type(value)))
    if origin is list:
        if not isinstance(value, list):
            raise ConversionError(path, "must be an array, got %s" % _json_type(value))
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        return [_convert(item_type, item, "%s[%d]" % (path, i)) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConversionError(path, "must be an object, got %s" % _json_type(value))
        args = typing.get_args(tp)
        value_type = args[1] if len(args) == 2 else Any
        return {k: _convert(value_type, v, "%s.%s" % (path, k)) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    # bool is a subclass of int in Python but not a number in JSON, so check it first.
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError("unsupported annotation in protocol dataclass: %r" % (tp,))
    raise ConversionError(path, "must be %s, got %s" % (describe_type(tp), _json_type(value)))


def describe_type(tp: Any) -> str:
    """Human-readable JSON name for an annotation, used in error messages."""
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is Union:
        parts = [describe_type(a) for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if _NONE_TYPE in typing.get_args(tp):
            parts.append("null")
        return " or ".join(parts)
    if origin is list:
        return "an array"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return "any value"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def to_json(value: Any) -> Any:
    """Convert a handler result (dataclass, list, dict, scalar) into plain JSON values.

    Non-finite floats become null because JSON cannot represent them.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def field_paths(cls: Any, prefix: str = "") -> List[str]:
    """Sorted field names of a dataclass, nested dataclasses flattened as dotted paths."""
    hints = typing.get_type_hints(cls)
    paths: List[str] = []
    for field in dataclasses.fields(cls):
        tp = _strip_optional(hints[field.name])
        name = prefix + field.name
        if dataclasses.is_dataclass(tp):
            paths.extend(field_paths(tp, name + "."))
        else:
            paths.append(name)
    return sorted(paths)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if len(args) == 1:
            return args[0]
    return tp
