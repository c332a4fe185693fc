"""pprint for the views: a FrozenDict, FrozenList or FrozenSet too wide for the line is wrapped
over lines as a dict, list or set is, inside its type's name (`FrozenDict({...})`).

pprint chooses how to wrap an object by its type's __repr__, in a table of its own
(`PrettyPrinter._dispatch`, private but unchanged from 3.5 to 3.13); without an entry a view was
printed as one line however long. The views join that table the first time one is repr'd after
pprint has been imported (pprint asks for the repr before it looks in the table), so importing
permafrost does not import pprint (with dataclasses and inspect, 10-15 ms). Where the table is
not what it was (a future Python), nothing joins and pprint prints the one-line repr, as before.

A view that fits the line is written by PrettyPrinter._safe_repr (private too, a method from 3.10
to 3.13), which reads a dict, a list or a tuple itself and anything else by its repr: depth= and
sort_dicts applied to a view only when it was wrapped. The views join it too: one level of a view
is handed to it as a dict or a list, inside the view's type's name. As pprint does for a dict, a
view too wide for what is left of the line is wrapped whatever depth= says.
"""
import os
import sys
import threading

from . import _core

joined = False  # tried: read by the views' __repr__ before calling join()
_installed = None  # the _safe_repr that join() gave PrettyPrinter
_joining = threading.RLock()  # a signal handler may repr a view while it is held


def _new_lock_in_child():
    # A fork while another thread held it left the child's copy held for ever: its first repr
    # of a view after importing pprint hung.
    global _joining
    _joining = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _printer():
    # Another thread may be importing pprint: its module is in sys.modules before its class is
    # defined (the class body fills the table), and joining then never happened.
    return getattr(sys.modules.get("pprint"), "PrettyPrinter", None)


def join(dict_type, list_type, set_type):
    """Adds the views to pprint's table and reader, once pprint is imported; True when this call
    did. Cheap while pprint is not imported (most servers): one dict lookup, no lock."""
    if _printer() is None:
        return False
    with _joining:  # two threads' views joining at once wrapped _safe_repr twice
        if joined:
            return False
        _join(_printer(), dict_type, list_type, set_type)
        return True


def _join(printer, dict_type, list_type, set_type):
    global joined, _installed
    joined = True
    table = getattr(printer, "_dispatch", None)
    layouts = [getattr(printer, name, None) for name in ("_pprint_dict", "_pprint_list",
                                                          "_pprint_set")]
    if isinstance(table, dict) and all(map(callable, layouts)):
        as_dict, as_list, as_set = layouts
        table[dict_type.__repr__] = _inside_name(as_dict)
        table[list_type.__repr__] = _inside_name(as_list)
        # _pprint_set writes the type's name itself for any type but set: FrozenSet({...}).
        table[set_type.__repr__] = _open_only(as_set)
    safe_repr = getattr(printer, "_safe_repr", None)
    if callable(safe_repr):
        # A set is read by its repr there, as a set is.
        levels = {dict_type: (lambda view: dict(view.items()), "{...}"),
                  list_type: (list, "[...]")}
        printer._safe_repr = _installed = _one_level(safe_repr, levels)
        # _safe_repr reads each level of a dict or list through format(), which only calls
        # _safe_repr: the same function in its place keeps one Python call a level (wrapping
        # _safe_repr alone added one for plain data too: a third of pprint's depth, a tenth
        # more time). Where format() is more than that call (a future Python), it stays.
        if getattr(getattr(printer.format, "__code__", None), "co_names", None) == ("_safe_repr",):
            printer.format = _installed


def _one_level(safe_repr, shallow):
    """safe_repr, which reads a view as the dict or list of its first level (its values views
    still, read by it in turn). The text is not readable: eval() does not make a view of it."""
    def _safe_repr(printer, obj, context, maxlevels, level):
        found = shallow.get(type(obj))
        if found is None or _core._closed(_core._store_of(obj)):
            return safe_repr(printer, obj, context, maxlevels, level)
        copy, elided = found
        name = type(obj).__name__
        if maxlevels and level >= maxlevels and len(obj):  # not a level's copy to print "..."
            return f"{name}({elided})", False, False
        text, _, recursive = safe_repr(printer, copy(obj), context, maxlevels, level)
        return f"{name}({text})", False, recursive
    _safe_repr.__wrapped__ = safe_repr
    return _safe_repr


def _open_only(layout):
    """layout, or the view's own repr for a view of closed data (which cannot be read)."""
    def write(printer, view, stream, indent, allowance, context, level):
        if _core._closed(_core._store_of(view)):
            stream.write(repr(view))
        else:
            layout(printer, view, stream, indent, allowance, context, level)
    return write


def _inside_name(layout):
    """layout (a dict's or a list's) between `TypeName(` and `)`, indented past the name."""
    def write(printer, view, stream, indent, allowance, context, level):
        name = type(view).__name__
        stream.write(name + "(")
        layout(printer, view, stream, indent + len(name) + 1, allowance + 1, context, level)
        stream.write(")")
    return _open_only(write)


def text_for(view, caller):
    """The text of the view repr'd while the views joined, as the new _safe_repr writes it when
    the caller frame is the _safe_repr it replaced (pprint's first view read the old one's way,
    without depth= or sort_dicts); None for any other caller."""
    replaced = getattr(_installed, "__wrapped__", None)
    if replaced is None or caller.f_code is not replaced.__code__:
        return None
    args = caller.f_locals
    names = ("self", "context", "maxlevels", "level")
    if args.get("object") is not view or not all(name in args for name in names):
        return None
    return _installed(*(args[name] for name in names[:1]), view,
                      *(args[name] for name in names[1:]))[0]
