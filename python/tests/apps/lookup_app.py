"""A WSGI app for test_gunicorn: serves lookups from a table loaded before fork (--preload).

PF_APP_MODE=frozen holds the table with permafrost.freeze(); PF_APP_MODE=dict as a plain dict.
GET /lookup?seed=N looks up 40 keys derived from N and returns a checksum of every field;
GET /pid returns the worker's pid.
"""
import os

import permafrost

ROWS = int(os.environ.get("PF_APP_ROWS", "100000"))
LOOKUPS_PER_REQUEST = 40

_table = {"user:%07d" % i: {"name": "name-%d" % i, "id": i, "score": i / 3.0,
                            "tags": ["t%d" % (i % 7), i % 5]} for i in range(ROWS)}
table = permafrost.freeze(_table) if os.environ.get("PF_APP_MODE") == "frozen" else _table
del _table


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/pid":
        body = str(os.getpid()).encode()
    else:
        seed = int(environ.get("QUERY_STRING", "seed=0").partition("=")[2] or 0)
        total = 0
        for j in range(LOOKUPS_PER_REQUEST):
            rec = table["user:%07d" % ((seed * 7919 + j * 104729) % ROWS)]
            total += len(rec["name"]) + rec["id"] + int(rec["score"]) + len(rec["tags"][0])
        body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
