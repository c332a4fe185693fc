"""permafrost.flask: Flask's JSON provider for frozen data (imports flask; permafrost does not).

    from permafrost.flask import JSONProvider
    app = Flask(__name__)
    app.json = JSONProvider(app)        # or: class App(Flask): json_provider_class = JSONProvider

    @app.get("/users/<key>")
    def user(key):
        return table[key]               # a FrozenDict, or jsonify(table[key]), or (rec, 201)

JSONProvider is Flask's DefaultJSONProvider (the same options: ensure_ascii, sort_keys, compact,
mimetype, default) with the encoding done by permafrost.dumps's C++ writer: a view is written
straight from its frozen bytes, ordinary values as json writes them, and Flask's `default`
(dates, UUIDs, Decimals, dataclasses) still applies. Responses carry the same bytes the default
provider would produce for the thawed value (a lone surrogate aside, which comes out as a \\udXXX
escape). Creating the provider also lets the app's view functions return a FrozenDict or
FrozenList, alone or in a (body, status, headers) tuple, as they may return a dict or a list, and
stores a view put in the session as its thawed value.
"""
import functools as _functools
import json as _json

from flask import has_request_context as _has_request_context
from flask import request as _request
from flask.json.provider import DefaultJSONProvider as _DefaultJSONProvider
from flask.json.tag import JSONTag as _JSONTag
from flask.json.tag import TaggedJSONSerializer as _TaggedJSONSerializer

from . import FrozenDict, FrozenList, JSONEncoder, _core

__all__ = ["JSONProvider"]

# The json.dumps arguments the C++ writer takes; any other (cls=...) goes through json.dumps.
_ENCODE_ARGS = frozenset({"default", "ensure_ascii", "sort_keys", "indent", "separators",
                          "allow_nan", "skipkeys", "check_circular"})


class JSONProvider(_DefaultJSONProvider):
    """Flask's default JSON provider, encoding permafrost views (and everything else) in C++."""

    def __init__(self, app):
        super().__init__(app)
        _accept_views_from_view_functions(app)
        _tag_views_in_sessions(app)

    def _options(self, kwargs):
        # DefaultJSONProvider.dumps's defaults, including Flask 2.2's deprecated config keys.
        config = self._app.config
        kwargs.setdefault("default", self.default)
        ensure_ascii = config.get("JSON_AS_ASCII")
        kwargs.setdefault("ensure_ascii", self.ensure_ascii if ensure_ascii is None
                          else ensure_ascii)
        sort_keys = config.get("JSON_SORT_KEYS")
        kwargs.setdefault("sort_keys", self.sort_keys if sort_keys is None else sort_keys)
        return kwargs

    def _legacy_encoder(self):
        """Flask 2.2's deprecated json_encoder of the request's blueprint, else of the app, or
        None (as DefaultJSONProvider.dumps chooses it; Flask 2.3 removed both)."""
        cls = getattr(self._app, "_json_encoder", None)
        if _has_request_context():
            blueprint = self._app.blueprints.get(_request.blueprint)
            if getattr(blueprint, "_json_encoder", None) is not None:
                cls = blueprint._json_encoder
        return cls

    def _legacy_dumps(self, obj, cls, kwargs):
        """json.dumps with the legacy encoder class cls, as Flask 2.2 runs it, views included:
        the class's own default() is used when it has one, the provider's otherwise, and either
        sees a view's thawed value (the encoder set on the app or a blueprint knew no views: every
        response holding one failed)."""
        given_default = "default" in kwargs
        kwargs = self._options(kwargs)
        if not given_default and "default" in cls.__dict__:
            del kwargs["default"]
        if "default" in kwargs:
            kwargs["default"] = _thawing(kwargs["default"])
        kwargs.setdefault("cls", _with_views(cls))
        return _json.dumps(obj, **kwargs)

    def encode(self, obj, **kwargs):
        """JSON of obj as UTF-8 bytes, with dumps()'s options and defaults (a lone surrogate
        escaped: UTF-8 cannot hold it)."""
        return self._encode(obj, kwargs, False)

    def dumps(self, obj, **kwargs):
        """Serialize obj as JSON text (json.dumps's arguments; Flask's defaults)."""
        return self._encode(obj, kwargs, True)

    def _encode(self, obj, kwargs, for_str):
        # for_str: json's str (a lone surrogate raw with ensure_ascii=False, as json.dumps leaves
        # it); else the bytes of a response body.
        legacy = self._legacy_encoder()
        if legacy is not None:
            text = self._legacy_dumps(obj, legacy, kwargs)
            return text if for_str else text.encode("utf-8", "backslashreplace")
        kwargs = self._options(kwargs)
        if not kwargs.keys() <= _ENCODE_ARGS:
            kwargs.setdefault("cls", JSONEncoder)
            text = _json.dumps(obj, **kwargs)
            return text if for_str else text.encode("utf-8", "backslashreplace")
        indent = kwargs.get("indent")
        item_sep, key_sep = kwargs.get("separators") or ((", " if indent is None else ","), ": ")
        fn = kwargs["default"]
        body = _core._encode(obj, indent, kwargs["sort_keys"], fn, kwargs["ensure_ascii"],
                             item_sep, key_sep, kwargs.get("allow_nan", True),
                             kwargs.get("skipkeys", False), kwargs.get("check_circular", True),
                             for_str)
        return body.decode("utf-8", "surrogatepass") if for_str else body

    def response(self, *args, **kwargs):
        """A response holding args/kwargs as JSON, as DefaultJSONProvider.response builds it, with
        the body's bytes from encode() (no str in between)."""
        obj = self._prepare_response_obj(args, kwargs)
        config = self._app.config
        pretty = config.get("JSONIFY_PRETTYPRINT_REGULAR")
        compact = self.compact if pretty is None else not pretty
        if (compact is None and self._app.debug) or compact is False:
            dump_args = {"indent": 2}
        else:
            dump_args = {"separators": (",", ":")}
        mimetype = config.get("JSONIFY_MIMETYPE") or self.mimetype
        legacy = self._legacy_encoder()
        if legacy is not None:
            body = f"{self._legacy_dumps(obj, legacy, dump_args)}\n".encode()
        else:
            body = self.encode(obj, **dump_args) + b"\n"
        return self._app.response_class(body, mimetype=mimetype)


def _thawing(default):
    """default, seeing a view's thawed value first."""
    def thawing(o):
        return o.thaw() if isinstance(o, (FrozenDict, FrozenList)) else default(o)
    return thawing


@_functools.lru_cache(maxsize=None)
def _with_views(cls):
    """The legacy encoder class cls, whose default() sees a view's thawed value first."""
    def default(self, o):
        if isinstance(o, (FrozenDict, FrozenList)):
            return o.thaw()
        return super(with_views, self).default(o)

    with_views = type(cls.__name__, (cls,), {"default": default, "__module__": cls.__module__})
    return with_views


def _accept_views_from_view_functions(app):
    """Let app's view functions return a FrozenDict or FrozenList as they may return a dict or a
    list: Flask's make_response tests for dict and list, so it is wrapped on this app."""
    if getattr(app.make_response, "_permafrost_views", False):
        return
    make_response = app.make_response

    def make_response_with_views(rv):
        body = rv[0] if isinstance(rv, tuple) and rv else rv
        if isinstance(body, (FrozenDict, FrozenList)):
            response = app.json.response(body)
            rv = (response,) + rv[1:] if isinstance(rv, tuple) else response
        return make_response(rv)

    make_response_with_views._permafrost_views = True
    make_response_with_views.__doc__ = make_response.__doc__
    app.make_response = make_response_with_views


class _PassView(_JSONTag):
    """Session data: a FrozenDict or FrozenList is tagged as its thawed dict or list is, so what
    the session gives back is what it gives for the dict (tuples, bytes, dates, Markup inside)."""
    __slots__ = ()
    key = None  # no tag of its own: read back as the dict or list

    def check(self, value):
        return isinstance(value, (FrozenDict, FrozenList))

    def to_json(self, value):
        return self.serializer.tag(value.thaw())

    tag = to_json


def _tag_views_in_sessions(app):
    """Flask's session serializer tags the dicts and lists of session data (tuples, bytes,
    datetimes and Markup inside them), and passes other objects to app.json untagged: a view
    stored in the session came back with its tuples as lists and its datetimes as strs, and one
    holding bytes failed the response. The view is tagged as its thawed value instead. Flask's
    session serializer is shared by every app, which is harmless: it only adds views."""
    serializer = getattr(app.session_interface, "serializer", None)
    if isinstance(serializer, _TaggedJSONSerializer) and not any(
            isinstance(tag, _PassView) for tag in serializer.order):
        serializer.register(_PassView, index=0)
