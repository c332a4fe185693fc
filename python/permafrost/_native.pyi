# Type stubs for permafrost._native: freeze_native() and its types (CPython 3.12 and 3.13).
#
# NativeDict, NativeList and NativeSet are real dict, list and set subclasses, typed as such so
# that code written for a dict accepts them. Their mutators exist at runtime only to raise
# TypeError; like the views', they are left out of the stubs (see stubtest_allowlist.txt), but a
# subclass stub cannot hide what dict, list and set declare, so a type checker does not report
# `d["k"] = v` on a NativeDict: the TypeError at runtime does.
from typing import Any, NamedTuple, TypeVar, overload

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")

__all__ = ["freeze_native", "NativeDict", "NativeList", "NativeSet", "NativeArena",
           "native_arena"]

class NativeDict(dict[_K, _V]):
    """A dict made by freeze_native(): read it as a dict; it cannot be modified."""
    def thaw(self) -> dict[_K, Any]:
        """A mutable deep copy: dicts, lists and sets become ordinary ones."""
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __copy__(self) -> dict[_K, _V]: ...

class NativeList(list[_T]):
    """A list made by freeze_native(): read it as a list; it cannot be modified."""
    def thaw(self) -> list[Any]:
        """A mutable deep copy: dicts, lists and sets become ordinary ones."""
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __copy__(self) -> list[_T]: ...

class NativeSet(set[_T]):
    """A set made by freeze_native(): read it as a set; it cannot be modified."""
    def thaw(self) -> set[_T]:
        """A mutable copy."""
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __copy__(self) -> set[_T]: ...

class NativeArena(NamedTuple):
    """The frozen arena of a freeze_native() copy."""
    name: str
    address: int
    size: int

def native_arena(obj: object) -> NativeArena: ...

# freeze_native() returns the same kind of object it is given: dicts, lists and sets as the
# native subclasses (nested ones too, which a static type cannot follow: their values are Any).
@overload
def freeze_native(obj: dict[_K, Any], *, name: str | None = None,
                  huge_pages: bool | None = None) -> NativeDict[_K, Any]: ...
@overload
def freeze_native(obj: list[Any], *, name: str | None = None,
                  huge_pages: bool | None = None) -> NativeList[Any]: ...
@overload
def freeze_native(obj: set[_T], *, name: str | None = None,
                  huge_pages: bool | None = None) -> NativeSet[_T]: ...
@overload
def freeze_native(obj: tuple[Any, ...], *, name: str | None = None,
                  huge_pages: bool | None = None) -> tuple[Any, ...]: ...
@overload
def freeze_native(obj: frozenset[_T], *, name: str | None = None,
                  huge_pages: bool | None = None) -> frozenset[_T]: ...
@overload
def freeze_native(obj: str, *, name: str | None = None, huge_pages: bool | None = None) -> str: ...
@overload
def freeze_native(obj: bytes, *, name: str | None = None,
                  huge_pages: bool | None = None) -> bytes: ...
@overload
def freeze_native(obj: int, *, name: str | None = None, huge_pages: bool | None = None) -> int: ...
@overload
def freeze_native(obj: float, *, name: str | None = None,
                  huge_pages: bool | None = None) -> float: ...
@overload
def freeze_native(obj: None, *, name: str | None = None,
                  huge_pages: bool | None = None) -> None: ...
