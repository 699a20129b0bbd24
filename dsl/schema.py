"""What a rule can see: the shape of the snapshot, the events and the built-in functions.

The language does not define the snapshot; the engine does (``engine/snapshot.py`` is the one
source of truth) and hands a ``Schema`` to the checker. Built-in functions that belong to the
language itself (``abs``, ``min``, ...) are declared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from riskc.dsl import types as T
from riskc.dsl.types import FuncT, Member, ObjT, Param


@dataclass(frozen=True, slots=True)
class Schema:
    roots: Mapping[str, Member]  # account, day, positions, ...
    binders: Mapping[str, ObjT]  # `for position p` -> the position record
    events: Mapping[str, Mapping[str, Member]]  # event kind -> its fields
    functions: Mapping[str, FuncT]  # free functions callable from rules
    # Names this scope does not see but another does, with the help to show (`group` in an
    # account policy, `day` in a group policy).
    unseen: Mapping[str, str] = MappingProxyType({})
    # The schema of a group policy (`scope group` in its header), when the engine has groups.
    group: Schema | None = None

    @property
    def event_kinds(self) -> tuple[str, ...]:
        return tuple(self.events)

    def event_members(self, kinds: tuple[str, ...]) -> dict[str, Member]:
        """Fields of `event` in a rule restricted to ``kinds`` (all kinds when empty): those
        every listed kind has, with the same type."""
        chosen = kinds or tuple(self.events)
        common = dict(self.events[chosen[0]])
        for kind in chosen[1:]:
            fields = self.events[kind]
            common = {k: m for k, m in common.items() if k in fields and fields[k].type == m.type}
        return common

    def event_kinds_with(self, field: str) -> list[str]:
        return [k for k, fields in self.events.items() if field in fields]


def frozen_map(items: dict) -> Mapping:
    return MappingProxyType(dict(items))


# Generic built-ins. Their signatures use the checker's own polymorphism (see checker.check_call):
# `SAME` means "the type of the first argument".
SAME = T.Prim("T")  # shown in signatures: abs(x: T) -> T

LANGUAGE_FUNCTIONS: Mapping[str, FuncT] = frozen_map(
    {
        "abs": FuncT((Param("x", SAME),), SAME, "Absolute value of a number, amount or duration."),
        "min": FuncT((Param("a", SAME), Param("b", SAME)), SAME, "The smaller of two values of one unit."),
        "max": FuncT((Param("a", SAME), Param("b", SAME)), SAME, "The larger of two values of one unit."),
        "coalesce": FuncT(
            (Param("value", SAME), Param("fallback", SAME)),
            SAME,
            "`value` unless it is none (an optional parameter left out), else `fallback`.",
        ),
        "get": FuncT(
            (Param("map", T.ANY), Param("key", T.ANY), Param("fallback", T.ANY)),
            T.ANY,
            "The value of `key` in `map`, or `fallback` when the map has no such key.",
        ),
        "len": FuncT((Param("items", T.ANY),), T.INT, "Number of items in a list or map."),
        "ceil": FuncT(
            (Param("x", SAME),),
            SAME,
            "`x` rounded up to a whole number, in its unit: `ceil(contracts / 10)` is whole contracts.",
        ),
        "floor": FuncT((Param("x", SAME),), SAME, "`x` rounded down to a whole number, in its unit."),
    }
)
