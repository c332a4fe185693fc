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
    """Adds the views to pprint's table and reader, once pprint is imported; whether they are
    (another thread's join is waited for). Cheap while pprint is not imported (most servers): one
    dict lookup, no lock."""
    printer = _printer()
    if printer is None:
        return False
    with _joining:  # two threads' views joining at once wrapped _safe_repr twice
        if not joined:
            _join(printer, dict_type, list_type, set_type)
    return True


def _join(printer, dict_type, list_type, set_type):
    global joined, _installed
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
    # pprint's own, also where a fork stopped another thread's join half way (joined is set last)
    safe_repr = getattr(safe_repr, "_pprint_own", safe_repr)
    if callable(safe_repr):
        # A set is read by its repr there, as a set is.
        levels = {dict_type: (lambda view: dict(view.items()), "{...}"),
                  list_type: (list, "[...]")}
        own_format = getattr(printer.format, "_pprint_own", printer.format)
        read, format = _one_level(safe_repr, levels, own_format)
        printer._safe_repr = _installed = read
        # _safe_repr reads each level of a dict or list through format(), which only calls
        # _safe_repr: wrapping _safe_repr alone added a Python call a level for plain data
        # too, which lowered pprint's depth. format() now reads plain data with pprint's own
        # _safe_repr itself. Where format() is more than that call (a future Python), it stays.
        if getattr(getattr(own_format, "__code__", None), "co_names", None) == ("_safe_repr",):
            printer.format = format
    joined = True  # last: a thread that finds it set finds pprint joined


def _one_level(safe_repr, shallow, own_format):
    """pprint's _safe_repr and format() for the views: a view is read as the dict or list of its
    first level (its values views still, read in turn), anything else by safe_repr. The text is
    not readable: eval() does not make a view of it."""
    def _safe_repr(self, object, context, maxlevels, level):
        found = shallow.get(type(object))
        if found is None or _core._closed(_core._store_of(object)):
            return safe_repr(self, object, context, maxlevels, level)
        copy, elided = found
        name = type(object).__name__
        if maxlevels and level >= maxlevels and len(object):  # no copy of a level to print "..."
            return f"{name}({elided})", False, False
        text, _, recursive = safe_repr(self, copy(object), context, maxlevels, level)
        return f"{name}({text})", False, recursive

    def format(self, object, context, maxlevels, level):
        # A subclass's own _safe_repr (a hex printer, a redacting one) or a later patch of it
        # is what format() calls, as pprint's format() does.
        if type(self)._safe_repr is not _safe_repr:
            return self._safe_repr(object, context, maxlevels, level)
        if type(object) not in shallow:  # plain data: one Python call a level, as before
            return safe_repr(self, object, context, maxlevels, level)
        return _safe_repr(self, object, context, maxlevels, level)

    _safe_repr.__wrapped__ = _safe_repr._pprint_own = safe_repr
    format.__wrapped__ = format._pprint_own = own_format
    for new, own in ((_safe_repr, safe_repr), (format, own_format)):
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(new, name, getattr(own, name))
    return _safe_repr, format


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
