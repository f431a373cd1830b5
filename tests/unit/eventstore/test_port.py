"""The EventStore port names no database library's types: a caller's transaction is opaque."""

from __future__ import annotations

import typing

from townhall.platform.eventstore import ports


def _named_types(hint: object) -> list[object]:
    return [hint, *(t for arg in typing.get_args(hint) for t in _named_types(arg))]


def test_the_port_and_its_handler_type_name_no_sqlalchemy_type():
    hints: list[object] = list(typing.get_args(ports.Handler))
    for name in ("append", "read_stream", "read_all", "stream_version", "head_position"):
        method = getattr(ports.EventStore, name)
        hints.extend(typing.get_type_hints(method, vars(ports)).values())
    modules = {getattr(t, "__module__", "") for hint in hints for t in _named_types(hint)}
    assert not [module for module in modules if module.startswith("sqlalchemy")]
    assert ports.Transaction in _named_types(
        typing.get_type_hints(ports.EventStore.append, vars(ports))["conn"]
    )
