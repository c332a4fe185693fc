"""Misuses mypy must report (test_typing.py checks each line marked `# error: CODE`)."""
from typing import Any

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet

record: FrozenDict[str, int] = permafrost.freeze({"id": 1})
record["id"] = 2  # error: index
del record["id"]  # error: attr-defined
record.update(id=3)  # error: attr-defined
items: FrozenList[int] = permafrost.freeze([1])
items.append(2)  # error: attr-defined
items[0] = 5  # error: index
tags: FrozenSet[str] = permafrost.freeze({"a"})
tags.add("b")  # error: attr-defined
wrong: FrozenDict[str, int] = permafrost.freeze([1])  # error: assignment
plain: dict[str, Any] = record  # error: assignment
text: str = record["id"]  # error: assignment
as_text: str = permafrost.dumps(record)  # error: assignment
