"""freeze_native(): real dicts, lists and strs in a write-protected arena (CPython 3.12 and 3.13).

freeze_native(obj) deep-copies obj with CPython's own constructors into a permafrost arena, makes
every object of the copy immortal (PEP 683: reference counting skips it) and untracked by the
garbage collector, caches every str's hash (and UTF-8 form), audits the arena and write-protects
it. Forked workers then read the copy -- lookups, iteration, json.dumps, pickle, repr, copy,
str methods, gc.collect() -- without writing a byte of it, so they share all of its pages.

Dicts, lists and sets come back as NativeDict, NativeList and NativeSet: subclasses of dict, list
and set that add nothing but refuse to be modified (TypeError naming thaw()). Everything that
reads a dict reads them: isinstance(x, dict), json, **kwargs, C extensions' PyDict_* calls.
tuple, frozenset, str, int, float, bytes, bool and None come back as themselves.
"""
import collections as _collections
import copyreg as _copyreg

from . import _core

__all__ = ["freeze_native", "NativeDict", "NativeList", "NativeSet", "NativeArena",
           "native_arena"]


def _frozen(self, *args, **kwargs):
    raise TypeError(f"'{type(self).__name__}' is frozen by permafrost.freeze_native(): it cannot "
                    "be modified; .thaw() returns a mutable copy")


def _makes(base):
    """A __new__ that makes an ordinary `base`: only freeze_native() makes native containers, and
    code that rebuilds a container as type(x)(items) (dataclasses.asdict, astuple, copying
    helpers) gets a plain, mutable one."""
    def __new__(cls, *args, **kwargs):
        return base(*args, **kwargs)
    return __new__


def _thaw(self):
    """A mutable deep copy: dicts, lists and sets become ordinary ones (tuples holding them are
    rebuilt); strs, numbers and other immutable values are shared with the frozen copy."""
    return _core._thaw_native(self)


class NativeDict(dict):
    """A dict made by permafrost.freeze_native(): read it as a dict; it cannot be modified.

    Pickles, copy.copy() and copy.deepcopy() give an ordinary dict; .thaw() a mutable deep copy.
    NativeDict(...) and NativeDict.fromkeys(...) make an ordinary dict.
    """
    __slots__ = ()
    __new__ = _makes(dict)
    thaw = _thaw

    def __reduce__(self):
        return _core._reduce_native(self)

    def __copy__(self):
        return dict(self)


class NativeList(list):
    """A list made by permafrost.freeze_native(): read it as a list; it cannot be modified.

    Pickles and copy.copy() give an ordinary list; .thaw() a mutable deep copy. NativeList(...)
    makes an ordinary list."""
    __slots__ = ()
    __new__ = _makes(list)
    thaw = _thaw

    def __reduce__(self):
        return _core._reduce_native(self)

    def __copy__(self):
        return list(self)


class NativeSet(set):
    """A set made by permafrost.freeze_native(): read it as a set; it cannot be modified.

    Pickles and copy.copy() give an ordinary set; .thaw() a mutable copy. NativeSet(...) makes
    an ordinary set."""
    __slots__ = ()
    __new__ = _makes(set)
    thaw = _thaw

    def __reduce__(self):
        return _core._reduce_native(self)

    def __copy__(self):
        return set(self)


for _cls, _names in ((NativeDict, ("__init__", "__setitem__", "__delitem__", "__ior__", "clear",
                                   "pop", "popitem", "setdefault", "update")),
                     (NativeList, ("__init__", "__setitem__", "__delitem__", "__iadd__",
                                   "__imul__", "append", "extend", "insert", "pop", "remove",
                                   "clear", "sort", "reverse")),
                     (NativeSet, ("__init__", "__ior__", "__iand__", "__isub__", "__ixor__", "add",
                                  "discard", "remove", "pop", "clear", "update",
                                  "difference_update", "intersection_update",
                                  "symmetric_difference_update"))):
    for _name in _names:
        setattr(_cls, _name, _frozen)
del _cls, _names, _name

_core._native_setup(NativeDict, NativeList, NativeSet, False)  # the main interpreter's, now
# pickle and copy.deepcopy look here before __reduce_ex__: the C reducer runs without a Python
# frame and checks the thread's stack, so a deeply nested copy raises RecursionError where a
# thread's small stack would otherwise overflow.
for _cls in (NativeDict, NativeList, NativeSet):
    _copyreg.pickle(_cls, _core._reduce_native)
del _cls

NativeArena = _collections.namedtuple("NativeArena", "name address size")
NativeArena.__doc__ = """The frozen arena of a freeze_native() copy: its name (in write-trap
reports, permafrost-stat, and /proc/PID/maps where the kernel names anonymous memory), first
byte's address and size in bytes."""


def native_arena(obj):
    """The NativeArena obj (any object of a freeze_native() copy) lives in.

    Raises TypeError for an object freeze_native() did not make, RuntimeError where
    freeze_native() is not available."""
    return NativeArena(*_core._native_arena(obj))


def freeze_native(obj, *, name=None, huge_pages=None):
    """A deep copy of obj made of real CPython objects in a write-protected arena.

    For pre-fork servers on CPython 3.12 and 3.13 (the default GIL build): freeze before
    forking; every forked worker reads the copy without writing (copying) a page of it. obj may
    hold dict, list, tuple, set, frozenset, str, int, float, bytes, bool and None (subclasses are
    copied as their base type, and none of their methods runs: keys that only a subclass's __eq__
    or __hash__ told apart raise TypeError); immortal objects (None, small ints, interned strs, earlier
    freeze_native() copies) are used as they are. A permafrost.freeze() view (FrozenDict...) is
    refused with TypeError: pass view.thaw().

    name: the arena's name in write-trap reports, permafrost-stat and (on kernels built with
    CONFIG_ANON_VMA_NAME) /proc/PID/maps. huge_pages: back the arena with transparent huge
    pages (default: when obj holds 4096 items or more).

    The copy is never freed (it lives until the process exits) and is only valid in this process
    and its forked children: it holds this process's type pointers and str hashes made with its
    hash seed. Pickling copies it by value. Raises TypeError naming the path of an unsupported
    value, a cycle or nesting deeper than 5000 levels; RuntimeError in an interpreter other than
    the one whose types the copies hold (the main one once it imported permafrost, else the
    first that called freeze_native()), and when the arena fails its audit.
    """
    _core._native_setup(NativeDict, NativeList, NativeSet, True)  # a subinterpreter's, now
    return _core._freeze_native(obj, name, huge_pages)
