"""pprint for the views: a FrozenDict, FrozenList or FrozenSet too wide for the line is wrapped
over lines as a dict, list or set is, inside its type's name (`FrozenDict({...})`).

pprint chooses how to wrap an object by its type's __repr__, in a table of its own
(`PrettyPrinter._dispatch`, private but unchanged from 3.5 to 3.13); without an entry a view was
printed as one line however long. The views join that table the first time one is repr'd after
pprint has been imported (pprint asks for the repr before it looks in the table), so importing
permafrost does not import pprint (with dataclasses and inspect, 10-15 ms). Where the table is
not what it was (a future Python), nothing joins and pprint prints the one-line repr, as before.
"""
import sys

from . import _core

joined = False  # tried: read by the views' __repr__ before calling join()


def join(dict_type, list_type, set_type):
    """Adds the views to pprint's table, once pprint is imported."""
    global joined
    pprint = sys.modules.get("pprint")
    if pprint is None:
        return
    joined = True
    printer = getattr(pprint, "PrettyPrinter", None)
    table = getattr(printer, "_dispatch", None)
    layouts = [getattr(printer, name, None) for name in ("_pprint_dict", "_pprint_list",
                                                          "_pprint_set")]
    if not isinstance(table, dict) or not all(map(callable, layouts)):
        return
    as_dict, as_list, as_set = layouts
    table[dict_type.__repr__] = _inside_name(as_dict)
    table[list_type.__repr__] = _inside_name(as_list)
    # _pprint_set writes the type's name itself for any type but set: FrozenSet({...}).
    table[set_type.__repr__] = _open_only(as_set)


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
