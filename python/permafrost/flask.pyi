# Type stubs for permafrost.flask (needs Flask >= 2.2, whose JSON providers it extends).
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Response

__all__ = ["JSONProvider"]

class JSONProvider(DefaultJSONProvider):
    """Flask's default JSON provider, encoding permafrost views (and everything else) in C++."""
    def __init__(self, app: Flask) -> None: ...
    def encode(self, obj: Any, **kwargs: Any) -> bytes: ...
    def dumps(self, obj: Any, **kwargs: Any) -> str: ...
    def response(self, *args: Any, **kwargs: Any) -> Response: ...
