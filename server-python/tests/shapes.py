"""Recursive check that a JSON result has exactly the fields of a protocol dataclass."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from gpu_workbench import protocol


def _dataclass_of(tp: Any) -> Any:
    """The dataclass inside Optional[X] / List[X], or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_of(arg)
        if found is not None:
            return found
    return None


def assert_shape(cls: Any, value: Any, path: str = "result") -> None:
    """`value` has exactly the fields of dataclass `cls`, recursively."""
    assert isinstance(value, dict), "%s is not an object" % path
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    assert set(value) == names, "%s: extra %s, missing %s" % (
        path,
        sorted(set(value) - names),
        sorted(names - set(value)),
    )
    for name in names:
        inner = _dataclass_of(hints[name])
        item = value[name]
        if inner is None or item is None:
            continue
        if isinstance(item, list):
            for i, element in enumerate(item[:50]):
                assert_shape(inner, element, "%s.%s[%d]" % (path, name, i))
        else:
            assert_shape(inner, item, "%s.%s" % (path, name))
    if cls is protocol.CheckpointModule:
        for i, child in enumerate(value["children"][:20]):
            assert_shape(protocol.CheckpointModule, child, "%s.children[%d]" % (path, i))
