"""Typical uses of permafrost, type-checked by test_typing.py with mypy --strict: no errors."""
import collections.abc
import datetime
import decimal
import json
import os
import pathlib
from typing import Any

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet


def load() -> dict[str, dict[str, Any]]:
    return {"user:1": {"name": "ada", "id": 1, "tags": ["x"]}}


table: FrozenDict[str, Any] = permafrost.freeze(load(), name="users")
record: FrozenDict[str, Any] = table["user:1"]
name: str = record["name"]
maybe: Any | None = table.get("user:2")
count: int = len(table)
keys: list[str] = list(table.keys())
owner: FrozenDict[str, Any] = table.items().mapping  # the FrozenDict itself, as read-only
present: bool = "user:1" in table
shallow: dict[str, Any] = record.copy()
deep: dict[str, Any] = record.thaw()
merged: dict[str, Any] = record | {"extra": 1}
digest: int = hash(permafrost.freeze({"id": 1, "name": "ada"}))  # hashable: no list inside
mapping: collections.abc.Mapping[str, Any] = record

numbers: FrozenList[Any] = permafrost.freeze([3, 1, 2])
first: Any = numbers[0]
head: list[Any] = numbers[:2]
as_list: list[Any] = numbers.thaw()

tags: FrozenSet[Any] = permafrost.freeze({"a", "b"})
union: frozenset[Any] = tags | {"c"}
scalar: str = permafrost.freeze("text")


def field(rec: FrozenDict[str, int], key: str) -> int:
    return rec[key]


usage: permafrost.MemoryUsage = permafrost.memory()
rss: int = usage.rss
text: str = json.dumps(record, default=permafrost.json_default)


def reopen(path: str) -> None:
    reopened: FrozenDict[str, Any] = permafrost.open(path)  # the saved root decides the type
    print(len(reopened))
    print(permafrost.open(os.fsencode(path)), permafrost.open(pathlib.Path(path)))
body: bytes = permafrost.dumps(record, indent=2, sort_keys=True, default=str)
when: datetime.datetime = permafrost.freeze(datetime.datetime(2026, 12, 3))
day: datetime.date = permafrost.freeze(datetime.date(2026, 12, 3))
price: decimal.Decimal = permafrost.freeze(decimal.Decimal("9.99"))
encoded: str = json.dumps(record, cls=permafrost.JSONEncoder)


def native(records: dict[str, dict[str, Any]]) -> int:
    # freeze_native() (3.12/3.13 only, so not called here): the copy is a real dict.
    table: permafrost.NativeDict[str, Any] = permafrost.freeze_native(records, name="records")
    as_dict: dict[str, Any] = table
    tags: permafrost.NativeList[Any] = permafrost.freeze_native(["a", "b"])
    mutable: dict[str, Any] = table.thaw()
    arena: permafrost.NativeArena = permafrost.native_arena(table)
    return len(as_dict) + len(tags) + len(mutable) + arena.size
