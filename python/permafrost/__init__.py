"""permafrost for Python: frozen dicts, lists and sets that forked and spawned workers share.

freeze(obj) deep-copies a graph of dict, list, tuple, str, bytes, int, float, bool, None, set and
frozenset into a frozen permafrost arena (read-only memory holding no reference counts) and
returns read-only views of it. Reading a view never writes the arena, so after fork() every
worker shares all of its pages with the parent for as long as it lives. frozen.save(path) writes
it to an image file; permafrost.open(path) maps one, and views of an image pickle as a small
reference (path, offset), so spawn/forkserver workers map the same page-cache pages.

    source = {"users": [{"name": "ada", "id": 1}]}
    data = permafrost.freeze(source)
    data["users"][0]["name"]    # 'ada': a new str, read from the frozen bytes
    data.thaw()                 # an ordinary dict again
    del source; permafrost.trim()   # before fork: return the dropped dict's heap to the kernel
    permafrost.dumps(data)      # JSON as UTF-8 bytes, written from the frozen bytes

Values come back as: FrozenDict (collections.abc.Mapping), FrozenList (Sequence), FrozenSet (Set)
for dicts, lists and sets; ordinary objects for str, bytes, int, float, bool, None and tuples
(a tuple of views when it holds containers). Subclasses (OrderedDict, namedtuple, IntEnum...)
are frozen as their base type; an OrderedDict keeps its own order (after move_to_end() too).

freeze_native(obj) (CPython 3.12 and 3.13) makes a different trade: the copy is made of real
CPython objects -- NativeDict and NativeList are dict and list subclasses -- made immortal and
write-protected, so code that needs a real dict gets one, and forked workers still copy no page
of it; it lives in this process and its forked children only (see permafrost._native).
"""
import collections as _collections
import collections.abc as _abc
import json as _json
import os as _os
import sys as _sys
import types as _types

from . import _core, _pprint, _stores
from ._version import __version__  # written by CMake from the project's version
from ._reload import Reloader
from ._stores import LostView
from ._core import (FrozenDict, FrozenList, FrozenSet, dumps, install_write_trap, trim,
                    write_trap_installed)
from ._native import (NativeArena, NativeDict, NativeList, NativeSet, freeze_native,
                      native_arena)

# open() is permafrost.open, not exported: `from permafrost import *` must not shadow the built-in.
__all__ = ["freeze", "build_dict", "build_list", "Reloader", "memory", "dumps", "JSONEncoder",
           "json_default", "trim",
           "install_write_trap", "write_trap_installed", "FrozenDict", "FrozenList", "FrozenSet",
           "MemoryUsage", "freeze_native", "NativeDict", "NativeList", "NativeSet", "NativeArena",
           "native_arena", "LostView"]


# For tests and diagnostics: _private_pages(frozen, pid=0) counts the copy-on-write copies
# (Private_Dirty pages) of frozen bytes in process pid; _sharing_audit(frozen, child, parent)
# compares the two processes' pagemaps over them. `frozen` is a view (its store's bytes), an
# object of a freeze_native() copy or its NativeArena (the whole arena).
def _native_range(obj):
    if isinstance(obj, NativeArena):
        return obj.address, obj.size
    if isinstance(obj, (FrozenDict, FrozenList, FrozenSet)) or _core._native_unsupported():
        return None
    try:
        _, address, size = _core._native_arena(obj)
    except TypeError:
        return None
    return address, size


def _private_pages(frozen, pid=0):
    r = _native_range(frozen)
    return _core._private_pages(frozen, pid) if r is None else _core._range_private_pages(*r, pid)


def _sharing_audit(frozen, child, parent):
    r = _native_range(frozen)
    if r is None:
        return _core._sharing_audit(frozen, child, parent)
    return _core._range_sharing_audit(*r, child, parent)

MemoryUsage = _collections.namedtuple("MemoryUsage", "rss pss uss shared")
MemoryUsage.__doc__ = """A process's memory in bytes (from /proc/PID/smaps_rollup).

rss: resident; pss: resident, each page divided by the processes mapping it; uss: private to the
process (Private_Clean + Private_Dirty); shared: resident and mapped by other processes too."""


def freeze(obj, *, name=None):
    """Deep-copy obj into a new frozen arena and return its read-only counterpart.

    name: the arena's name in write-trap reports and permafrost-stat, and in /proc/PID/maps on
    kernels that name anonymous memory (CONFIG_ANON_VMA_NAME).
    Raises TypeError naming the path of an unsupported value or a cycle, e.g.
    'obj["users"][3]["created"]: datetime is not supported'. Raises RuntimeError when a dict or
    list of more than 4096 items changes while it is frozen (user code run midway, e.g. a
    finalizer), as iterating it would: 'obj: dictionary changed size during freeze()'. Such
    containers are walked live, without a copy of their items; smaller ones are frozen as they
    were when freeze() reached them.
    """
    return _core._freeze(obj, name)


def build_dict(items, *, path=None, name=None):
    """Freeze the (key, value) pairs of an iterable (a generator, mapping.items(), ...) as a
    FrozenDict and return it; with path, save it there as an image (as frozen.save(path)) and
    return the root of the image, mapped as permafrost.open(path) maps it (the arena is freed).
    A mapping (an object with keys(), as dict() tells one) gives its keys and values, as
    dict(mapping) takes them.

    The pairs are frozen one at a time into the new arena and each is released before the next
    is pulled: the source is never held, and beside the frozen bytes a build keeps each key's
    word (4 or 8 bytes) and each value's (8 bytes; a record of a table keeps only its fields)
    until the root is written. A key given twice keeps its first position and its last value,
    as in dict(items); the earlier values stay in the arena (each value is frozen as it
    arrives). An error midway (a value freeze() does not store, an exception raised by the
    iterable, KeyboardInterrupt) propagates, the partial arena is released and nothing is saved.
    A child forked while the build runs gets RuntimeError at its next item: a build goes on only
    in the process that began it. name: as in freeze().

    Sharing: within one pair, a container reached twice is stored once, as freeze() does;
    across pairs it is stored per pair (a container that outlives its pair is not remembered).
    Small strs, bytes and lists or tuples of scalars are stored once by content everywhere."""
    if hasattr(items, "keys"):
        # As dict() does: iterating a mapping gives its keys, and build_dict({"US": 1}) was
        # {"U": "S"} (each 2-character key unpacked as a pair), a longer key a ValueError.
        # A dict subclass that keeps dict's iteration is copied from its storage by dict(), as
        # here: its own keys() or __getitem__ are not asked (dict(d) and build_dict(d) differed).
        items = (iter(dict.items(items)) if isinstance(items, dict) and
                 type(items).__iter__ is dict.__iter__ else _mapping_pairs(items))
    return _build(items, True, path, name)


def _mapping_pairs(mapping):
    for key in mapping.keys():
        yield key, mapping[key]


def build_list(values, *, path=None, name=None):
    """Freeze the values of an iterable (a generator, a file's records, ...) as a FrozenList
    and return it; with path, save it there as an image and return the image's root (as
    build_dict()).

    One value at a time, each released before the next is pulled; 8 bytes per value stay until
    the end. Errors, a fork while it runs, name and sharing: as in build_dict()."""
    return _build(values, False, path, name)


def _build(source, as_dict, path, name):
    frozen = _core._build(source, as_dict, name)
    del source
    if path is None:
        return frozen
    # Saved, the arena goes and the result maps the image: its pages are the page cache's, the
    # ones every process that opens the image shares (and open() checks what was written).
    try:
        _save(frozen, path)
    finally:
        _core._close(_core._store_of(frozen))
    return open(path)


def memory(pid=None):
    """MemoryUsage(rss, pss, uss, shared) of process pid (default: this one), in bytes.

    Raises TypeError for a pid that is not an integer, ProcessLookupError when there is no
    such process, PermissionError when this process may not read it (another user's), another
    OSError when its /proc file cannot be read otherwise."""
    if pid is None:
        return MemoryUsage(*_core._memory(0))
    pid = _operator.index(pid)
    if not 0 < pid < 2 ** 31:  # 0 would name this process, a larger one another pid once cast
        raise ProcessLookupError(f"no process {pid}")
    return MemoryUsage(*_core._memory(pid))


def open(path, populate=False):
    """Map the image file at path (written by frozen.save) and return its root view.

    The mapping is read-only and shared through the page cache: every process that opens the
    same file holds its pages once. It stays mapped while any view of it is alive (opening or
    unpickling it again meanwhile maps nothing new, whatever path names the file: str, bytes or
    os.PathLike, relative, or through a symlink) and is unmapped when the last one goes, or at
    root.close(); `with permafrost.open(path) as root:` closes it at the end of the block.
    Opening the path again after a new image was saved there maps the new one; views of the old
    one stay valid (the swap pattern; permafrost.Reloader does it for servers).

    Never rewrite a mapped image in place (cp new.pfi live.pfi, or writing into it): readers of
    the old bytes die of SIGBUS or SIGSEGV. Save to another name and rename it over the path,
    which save() does.

    populate=True maps every page of a newly opened image in one call (MADV_POPULATE_READ, Linux
    5.14+; a read per page before) ahead of the checksum and graph check, instead of a page fault
    per page (or per 2 MiB) as they and later reads touch it. An image already open at this path
    (or at another path to the same file) is returned as it is.

    Signal handlers run while the image is checked: Ctrl-C (KeyboardInterrupt) abandons a long
    open, and nothing of the image stays mapped."""
    # Absolute: views pickle this path, and a worker may run in another directory. Another path
    # to a file already open (a symlink, a relative one) gives its mapping (_stores.image_store).
    return _core._store_view(
        _stores.image_store(_stores.absolute_path(path), populate=bool(populate)), 0)


def _save(self, path):
    """save(path): write this value and everything under it as an image file.

    Atomic (temp file, fsync, rename): a process opening path sees the old file or the new one.
    permafrost.open(path) maps it in any process. A view inside a larger graph saves its own
    sub-graph only (copied into a new arena first)."""
    path = _os.fspath(path)
    if _core._is_root(self):
        _core._save(self, path, _stores.new_image_id())
        return
    copy = freeze(self)
    try:
        _core._save(copy, path, _stores.new_image_id())
    finally:
        _core._close(_core._store_of(copy))


def _reduce(self):
    path, offset, image_id = self._ref()
    if path is not None:  # in an image: a small reference, the receiver maps the same pages
        return (_stores.image_value, (path, offset, image_id))
    # By value: the receiver freezes its own copy (small ones share a pool: _stores.frozen_value).
    return (_stores.frozen_value, (self.thaw(),))


def _close(self):
    """close(): unmap the frozen graph this view belongs to (its image or arena) now.

    Every view of it raises ValueError from then on (a reader already running finishes first).
    Idempotent. Without close(), the graph is unmapped when its last view is gone."""
    _core._close(_core._store_of(self))


def _exit(self, *exc_info):
    self.close()
    return False


def json_default(obj):
    """Use as json.dumps(frozen, default=permafrost.json_default), or give it to any encoder that
    takes a `default` callable.

    Returns the frozen dict or list thawed (plain objects) for the encoder to continue with; a
    datetime, date, time, timedelta, Decimal or UUID as the string permafrost.dumps() writes, an
    Enum member as its value; a FrozenSet raises TypeError, as a set does. permafrost.dumps()
    and permafrost.JSONEncoder write the same text without thawing anything."""
    if isinstance(obj, (FrozenDict, FrozenList)):
        return obj.thaw()
    return _core._jsonable(obj)


class JSONEncoder(_json.JSONEncoder):
    """A json.JSONEncoder that encodes permafrost's views, for code that takes an encoder class:
    json.dumps(obj, cls=permafrost.JSONEncoder), json.dump(obj, fp, cls=...).

    Every json.JSONEncoder option is honoured, and the text is json's for the thawed value (a
    lone surrogate included); encoding runs in permafrost.dumps's C++ writer, views straight
    from their frozen bytes. A subclass may override default() as with json.JSONEncoder; one
    that overrides iterencode() gets json's own encoder, with views handed to default() (which
    thaws them)."""

    def default(self, o):
        if isinstance(o, (FrozenDict, FrozenList)):
            return o.thaw()
        # datetime, date, time, timedelta, Decimal, UUID: the string dumps() writes; an Enum
        # member: its value; anything else: json.JSONEncoder.default's TypeError.
        return _core._jsonable(o)

    def encode(self, o):
        if type(self).iterencode is not JSONEncoder.iterencode:
            return super().encode(o)  # the subclass's own iterencode decides
        return self._text(o)

    def iterencode(self, o, _one_shot=False):
        return iter((self._text(o),))

    def _text(self, o):
        # json.JSONEncoder.default (ours included) only raises: pass no hook, and the error
        # names the path of the value that failed.
        fn = self.default
        if getattr(fn, "__func__", None) is JSONEncoder.default:
            fn = None
        # For a str (for_str): a lone surrogate is in the bytes as surrogatepass encodes it, and
        # so in the str raw, as json leaves it with ensure_ascii=False.
        text = _core._encode(o, self.indent, self.sort_keys, fn, self.ensure_ascii,
                             self.item_separator, self.key_separator, self.allow_nan,
                             self.skipkeys, self.check_circular, True)
        return text.decode("utf-8", "surrogatepass")


# ----- FrozenDict: collections.abc.Mapping ------------------------------------------------------

# dict's views are reversible (3.8+); collections.abc's are not, so each adds __reversed__.
# dict's views have .mapping, a read-only mappingproxy of their dict; a FrozenDict is read-only
# already, so its views' .mapping is the FrozenDict itself: nothing to wrap, nothing copied.
_view_mapping = property(lambda self: self._mapping,
                         doc="The FrozenDict this is a view of (read-only, as a dict view's).")


class _KeysView(_abc.KeysView):
    __slots__ = ()
    mapping = _view_mapping

    def __iter__(self):
        return iter(self._mapping)  # the C iterator, which pickles (a generator does not)

    def __reversed__(self):
        return reversed(list(self._mapping))

    def __sub__(self, other):
        # As dict_keys: the keys less every element of other, which takes any iterable and so
        # hashes each (an unhashable one is a TypeError, as there).
        result = set(self._mapping)
        result.difference_update(other)
        return result

    def __ror__(self, other):
        # As dict_keys: other's elements first, so of two equal elements (1 and 1.0) other's is
        # kept; collections.abc's kept the keys'.
        result = set(other)
        result.update(self._mapping)
        return result


class _ValuesView(_abc.ValuesView):
    __slots__ = ()
    mapping = _view_mapping

    def __iter__(self):
        return self._mapping._iter_values()

    def __reversed__(self):
        return reversed(list(self._mapping._iter_values()))


class _ItemsView(_abc.ItemsView):
    __slots__ = ()
    mapping = _view_mapping

    def __contains__(self, item):
        # As dict_items: anything but a (key, value) tuple is simply not an item (the &, -, ^,
        # isdisjoint and comparisons of collections.abc ask this of every operand's element:
        # `fd.items() & {"a": 1}` raised ValueError unpacking "a"); an unhashable key raises
        # TypeError, as the dict's lookup does.
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        key, value = item
        found = self._mapping.get(key, _ABSENT)
        return found is not _ABSENT and (found is value or found == value)

    def __iter__(self):
        return self._mapping._iter_items()

    def __reversed__(self):
        return reversed(list(self._mapping._iter_items()))

    # -, ^ and their reflections as dict_items computes them, on a dict of the same items: it
    # hashes every item (`[] - d.items()` is a TypeError where a value is unhashable; so was
    # collections.abc's `d.items() ^ other` where dict's is not). & and | agree already.
    def _dict_items(self):
        return dict(self._mapping._iter_items()).items()

    def __sub__(self, other):
        return self._dict_items() - other

    def __rsub__(self, other):
        return other - self._dict_items()

    def __ror__(self, other):
        return other | self._dict_items()  # other's equal items kept, as dict_items keeps them

    def __xor__(self, other):
        return self._dict_items() ^ other

    def __rxor__(self, other):
        return other ^ self._dict_items()


_ABSENT = object()


def _dict_eq(self, other):
    if _same_node(self, other):  # one value reached twice: equal, as an object is to itself
        return True
    if isinstance(other, FrozenDict):
        get = FrozenDict.get
    elif isinstance(other, dict):
        # dict's own lookup, as dict's == reads a dict subclass: other[k] would let a Counter's
        # or a defaultdict's __missing__ answer for a key it does not hold (and a defaultdict
        # insert it), making a FrozenDict equal to a dict with other keys.
        get = dict.get
    elif isinstance(other, _abc.Mapping):
        # As collections.abc.Mapping compares: by items, never by a lookup that may insert.
        return len(self) == len(other) and dict(self._iter_items()) == dict(other.items())
    else:
        return NotImplemented
    if len(self) != len(other):
        return False
    for k, v in self._iter_items():
        found = get(other, k, _ABSENT)
        if found is _ABSENT or found != v:
            return False
    return True


# A views' method run as one level of a recursive read of nested views (repr, ==, ordering,
# hash): each level of nesting is a level of C stack, and a thread with a small stack
# (threading.stack_size) died of SIGSEGV where it now raises RecursionError (views.hpp).
_nested = _core._nested
_same_node = _core._same_node


def _open_repr(build):
    """A view's __repr__: build(self), or for a view of closed data a placeholder (a repr that
    raised broke logging, tracebacks with locals and debuggers after close())."""
    def __repr__(self):
        if not _pprint.joined and _pprint.join(FrozenDict, FrozenList, FrozenSet):
            # Joined by this call or by another thread meanwhile: either way pprint's first
            # read of a view may have asked for it, the old way. No Python caller (atexit, a
            # thread started with a builtin, C code): f_back is None.
            caller = _sys._getframe(0).f_back
            text = None if caller is None else _pprint.text_for(self, caller)
            if text is not None:
                return text
        if _core._closed(_core._store_of(self)):
            return f"<{type(self).__name__} of closed frozen data>"
        return build(self)
    __repr__.__wrapped__ = build  # _name_methods names a lambda `build` after the attribute too
    return _nested(__repr__)


@_open_repr
def _dict_repr(self):
    return "FrozenDict({" + ", ".join(f"{k!r}: {v!r}" for k, v in self._iter_items()) + "})"


# `rec | other` and `other | rec` are what they are with a dict in place of rec, so the other
# operand's type decides as it does for a dict. A dict (of any subclass) or a FrozenDict: the dict
# operation, whose subclass operators run as there (`rec | OrderedDict()` is an OrderedDict as
# `{} | OrderedDict()` is: Python asks a right operand's subclass first; `defaultdict() | rec` a
# defaultdict, `Counter() | rec` a dict). Anything else: dict.__or__ takes no other type, so the
# other operand's own reflected operator gets the dict (`rec | UserDict()` is a UserDict), and
# where it has none, or it refuses, TypeError, as for a dict (a Mapping without | is refused).
def _own_operator(cls, name):
    # The operator the class itself defines (through its bases), as Python's own dispatch finds
    # it: getattr(cls, name) would also find the metaclass's, type.__ror__ (for `int | None`),
    # which called with two operands raised `TypeError: expected 1 argument, got 2` for
    # `rec | [1]` where a dict's says "unsupported operand type(s) for |".
    for base in cls.__mro__:
        if name in base.__dict__:
            return getattr(cls, name)
    return None


def _type_name(cls):
    # The name Python's "unsupported operand" message gives the type (its tp_name): qualified by
    # module for types defined in C outside builtins, as `decimal.Decimal`.
    heap = cls.__flags__ & (1 << 9)  # Py_TPFLAGS_HEAPTYPE: a class statement's type
    if heap or cls.__module__ == "builtins":
        return cls.__name__
    return cls.__module__ + "." + cls.__name__


def _dict_or(self, other):
    if isinstance(other, (dict, FrozenDict)):
        return dict(self._iter_items()) | other
    ror = _own_operator(type(other), "__ror__")
    if ror is None:
        return NotImplemented
    merged = ror(other, dict(self._iter_items()))
    if merged is NotImplemented:
        # The reflected operator refused the dict as `{} | other` would ask it: refuse here, as
        # returning NotImplemented would make Python call it a second time, with the view.
        raise TypeError("unsupported operand type(s) for |: 'permafrost.FrozenDict' and '%s'"
                        % _type_name(type(other)))
    return merged


def _dict_ror(self, other):
    # Reached only when other's own __or__ (if any) refused rec: other is no dict (a dict's |
    # refuses rec too), so the dict goes to the same __or__, as `other | dict` would call it.
    if isinstance(other, dict):
        return other | dict(self._iter_items())
    or_ = _own_operator(type(other), "__or__")
    return NotImplemented if or_ is None else or_(other, dict(self._iter_items()))


def _dict_hash(self):
    # PEP 814's definition for frozendict: equal mappings hash equal whatever their order, and a
    # value that is not hashable (a FrozenList, a list in a tuple) raises TypeError naming it.
    return hash(frozenset(self._iter_items()))


def _frozen_op(self, *args, **kwargs):
    raise TypeError(f"'{type(self).__name__}' is frozen: use .thaw() for a mutable copy")


for _cls, _names in ((FrozenDict, ("__setitem__", "__delitem__", "__ior__", "pop", "popitem",
                                   "clear", "update", "setdefault")),
                     (FrozenList, ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append",
                                   "extend", "insert", "pop", "remove", "clear", "sort",
                                   "reverse")),
                     (FrozenSet, ("__ior__", "__iand__", "__isub__", "__ixor__", "add", "discard",
                                  "remove", "pop", "clear", "update", "difference_update",
                                  "intersection_update", "symmetric_difference_update"))):
    for _name in _names:
        setattr(_cls, _name, _frozen_op)
    _cls.save = _save
    _cls.close = _close
    _cls.closed = property(lambda self: _core._closed(_core._store_of(self)),
                           doc="True after close() of this view's image or arena")
    _cls.__enter__ = lambda self: self
    _cls.__exit__ = _exit
    _cls.__reduce__ = _reduce
    _cls.__copy__ = lambda self: self
    _cls.__deepcopy__ = lambda self, memo: self
    # FrozenDict[str, int] in annotations and at runtime, as for dict.
    _cls.__class_getitem__ = classmethod(_types.GenericAlias)

FrozenDict.keys = lambda self: _KeysView(self)
FrozenDict.values = lambda self: _ValuesView(self)
FrozenDict.items = lambda self: _ItemsView(self)
FrozenDict.__eq__ = _nested(_dict_eq)
FrozenDict.__ne__ = _nested(lambda self, other: (NotImplemented if (r := _dict_eq(self, other))
                                                 is NotImplemented else not r))
FrozenDict.__repr__ = _dict_repr
FrozenDict.__or__ = _dict_or
FrozenDict.__ror__ = _dict_ror
FrozenDict.__hash__ = _nested(_dict_hash)
FrozenDict.__reversed__ = lambda self: reversed(list(self))
# As dict.copy: a new dict of the same keys and values (nested containers stay views); thaw() is
# the deep copy.
FrozenDict.copy = lambda self: dict(self._iter_items())
_abc.Mapping.register(FrozenDict)


# ----- FrozenList: collections.abc.Sequence -----------------------------------------------------

def _list_eq(self, other):
    if _same_node(self, other):  # one value reached twice: equal, as an object is to itself
        return True
    if isinstance(other, (list, FrozenList)):  # as for a list, never equal to a tuple
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))
    return NotImplemented


def _list_compare(op):
    def compare(self, other):
        if isinstance(other, (list, FrozenList)):
            return op(list(self), list(other))
        return NotImplemented
    return compare


import operator as _operator  # noqa: E402

FrozenList.__eq__ = _nested(_list_eq)
FrozenList.__ne__ = _nested(lambda self, other: (NotImplemented if (r := _list_eq(self, other))
                                                 is NotImplemented else not r))
FrozenList.__lt__ = _nested(_list_compare(_operator.lt))
FrozenList.__le__ = _nested(_list_compare(_operator.le))
FrozenList.__gt__ = _nested(_list_compare(_operator.gt))
FrozenList.__ge__ = _nested(_list_compare(_operator.ge))
FrozenList.__repr__ = _open_repr(lambda self: "FrozenList([" + ", ".join(map(repr, self)) + "])")
FrozenList.__hash__ = None  # unhashable as a list, and so not a collections.abc.Hashable
FrozenList.__contains__ = _abc.Sequence.__contains__


def _list_index(self, value, start=0, stop=None, /):
    # As list.index: start and stop may be any object with __index__ (collections.abc's compares
    # them with ints and raised TypeError for such an object), and no keyword arguments.
    start = _operator.index(start)
    if stop is not None:
        stop = _operator.index(stop)
    try:
        return _abc.Sequence.index(self, value, start, stop)
    except ValueError as e:
        if e.args:  # raised by an item's __eq__: not ours to rename
            raise
        # collections.abc's ValueError is bare; list.index names the value, and callers log it.
        raise ValueError(f"{value!r} is not in list") from None


FrozenList.index = _list_index
FrozenList.count = lambda self, value, /: _abc.Sequence.count(self, value)  # positional, as list
FrozenList.__add__ = lambda self, other: (list(self) + list(other)
                                          if isinstance(other, (list, FrozenList))
                                          else NotImplemented)
FrozenList.__radd__ = lambda self, other: (list(other) + list(self)
                                           if isinstance(other, list) else NotImplemented)
FrozenList.copy = lambda self: list(self)  # shallow, as list.copy
_abc.Sequence.register(FrozenList)


# ----- FrozenSet: collections.abc.Set -----------------------------------------------------------

def _set_from_iterable(cls, it):
    return frozenset(it)


FrozenSet._from_iterable = classmethod(_set_from_iterable)
for _name in ("__le__", "__lt__", "__eq__", "__ne__", "__ge__", "__gt__", "isdisjoint"):
    setattr(FrozenSet, _name, _nested(getattr(_abc.Set, _name)))


# &, |, - and ^ take a set or frozenset (or a FrozenSet) on the left, as frozenset's do, and
# leave any other operand to its reflected operator: collections.abc.Set's take any iterable, so
# `view & [1]` gave a frozenset where `frozenset() & [1]` raises TypeError, and `view & d.keys()`
# a frozenset where dict_keys' reflected & makes a set. The named methods (intersection() and the
# others, below) take any iterable, as frozenset's do.
def _set_forward(name):
    abc_op = getattr(_abc.Set, name)

    def forward(self, other):
        if not isinstance(other, (set, frozenset, FrozenSet)):
            return NotImplemented
        return abc_op(self, other)
    return forward


# A set or frozenset on the left keeps its type, as `set | frozenset` gives a set: collections.abc
# builds a frozenset (_from_iterable), so `s |= view` (set's in-place operators take only sets, so
# Python falls back to s = s | view) turned the set s into a frozenset, and s.add() then failed.
def _set_reflected(name, op):
    abc_op = getattr(_abc.Set, name)

    def reflected(self, other):
        if isinstance(other, (set, frozenset)):
            return op(other, frozenset(self))
        if not isinstance(other, _abc.Set):
            return NotImplemented
        return abc_op(self, other)
    return reflected


for _name in ("__and__", "__or__", "__sub__", "__xor__"):
    setattr(FrozenSet, _name, _set_forward(_name))
for _name, _op in (("__rand__", _operator.and_), ("__ror__", _operator.or_),
                   ("__rsub__", _operator.sub), ("__rxor__", _operator.xor)):
    setattr(FrozenSet, _name, _set_reflected(_name, _op))
# Immutable whatever it was frozen from (a set or a frozenset): it hashes as the frozenset of its
# elements, so it finds and is found as that frozenset in a dict or set.
FrozenSet.__hash__ = _nested(lambda self: hash(frozenset(self)))
# Empty, FrozenSet(), as set() and frozenset() are: FrozenSet({}) read as a set of an empty dict.
FrozenSet.__repr__ = _open_repr(
    lambda self: "FrozenSet({" + ", ".join(map(repr, self)) + "})" if len(self) else "FrozenSet()")
FrozenSet.issubset = lambda self, other: self <= frozenset(other)
FrozenSet.issuperset = lambda self, other: self >= frozenset(other)
FrozenSet.union = lambda self, *others: frozenset(self).union(*others)
FrozenSet.intersection = lambda self, *others: frozenset(self).intersection(*others)
FrozenSet.difference = lambda self, *others: frozenset(self).difference(*others)
FrozenSet.symmetric_difference = lambda self, other: frozenset(self).symmetric_difference(other)
FrozenSet.copy = lambda self: set(self)  # shallow, as set.copy
_abc.Set.register(FrozenSet)



def _name_methods(cls):
    """Names the methods given to cls as lambdas or local functions (or wrappers of them) after
    their attribute, so that an error or a traceback names the method called, and the method
    pickles by name: `L.count()` raised "<lambda>() missing 1 required positional argument",
    `L.closed = 1` "property '<lambda>' of 'FrozenList' object has no setter", and
    pickle.dumps(FrozenList.__lt__) "Can't pickle local object '_list_compare.<locals>...'".
    A private function of this module given to the classes (`_save` as `save`) gets a copy
    of its own in each: `rec.save("a", "b")` said "_save() takes 2 positional arguments"."""
    for attr, member in list(vars(cls).items()):
        if (isinstance(member, _types.FunctionType) and member.__module__ == __name__ and
                member.__name__.startswith("_") and member.__name__ != attr):
            member = _types.FunctionType(member.__code__, member.__globals__, attr,
                                         member.__defaults__, member.__closure__)
            shared = vars(cls)[attr]
            member.__kwdefaults__ = shared.__kwdefaults__
            member.__doc__ = shared.__doc__
            member.__dict__.update(shared.__dict__)
            member.__qualname__ = f"{cls.__name__}.{attr}"
            setattr(cls, attr, member)
        functions = [member.fget] if isinstance(member, property) else [member]
        seen = set()
        while functions:
            f = functions.pop()
            if id(f) in seen:
                continue
            seen.add(id(f))
            if isinstance(f, _types.FunctionType) and (f.__name__ == "<lambda>" or
                                                       "<locals>" in f.__qualname__):
                f.__name__, f.__qualname__ = attr, f"{cls.__name__}.{attr}"
            wrapped = getattr(f, "__wrapped__", None)  # _nested(f), _open_repr's build
            if wrapped is not None:
                functions.append(wrapped)


for _cls in (FrozenDict, FrozenList, FrozenSet):
    _name_methods(_cls)
_stores.register_reducers((FrozenDict, FrozenList, FrozenSet))
_pprint.join(FrozenDict, FrozenList, FrozenSet)  # pprint already imported: from the first view
_image_value = _stores.image_value  # the name pickles of image views made before this version use

del _cls, _names, _name, _op
