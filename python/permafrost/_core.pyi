# Type stubs for permafrost._core, the extension module. Its public names are re-exported by
# permafrost (use them from there); the underscore helpers serve permafrost/__init__.py and tests.
from collections.abc import Callable
from typing import Any, final

from . import FrozenDict as FrozenDict
from . import FrozenList as FrozenList
from . import FrozenSet as FrozenSet

@final
class Store:
    """The owner of one frozen value graph (an arena or an image)."""

def install_write_trap() -> None: ...
def write_trap_installed() -> bool: ...
def trim() -> bool: ...
def dumps(obj: object, *, indent: int | str | None = None, sort_keys: bool = False,
          default: Callable[[Any], Any] | None = None) -> bytes: ...
def __getattr__(name: str) -> Any: ...  # the private helpers (_freeze, _save, _open_store...)
