"""A plain WSGI app for uWSGI in pre-fork mode, serving the records table (records.py) as JSON.

    cd examples/python
    PF_TABLE=frozen uwsgi --plugin python3 --master --processes 4 \
        --http-socket 127.0.0.1:8000 --wsgi-file wsgi_app.py

uWSGI loads the app, and so builds the table, in the master and then forks the workers (no
--lazy-apps). PF_TABLE=frozen (default) holds the table with permafrost.freeze(), PF_TABLE=dict as
a plain dict (the peer), PF_TABLE=prebuilt opens the image file PF_IMAGE built offline (README,
"Deploying"); PF_ROWS sets the size of the others (default 500,000). The same routes as
flask_app.py: /record/<key>, /records?start=P&count=N, /stats.
"""
import os
from urllib.parse import parse_qs

import permafrost
import records

TABLE_KIND = os.environ.get("PF_TABLE", "frozen")
table, table_bytes = records.load_table(TABLE_KIND)
position = records.scrambled(len(table))


def to_json(obj):
    return permafrost.dumps(obj)  # UTF-8 JSON bytes, frozen records written from their bytes


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    status, body = "200 OK", None
    if path.startswith("/record/"):
        rec = table.get(path[len("/record/"):])
        status, body = ("200 OK", to_json(rec)) if rec is not None else ("404 Not Found", b"{}")
    elif path == "/records":
        try:
            start = max(int(query.get("start", ["0"])[0]), 0)
            count = max(int(query.get("count", ["100"])[0]), 0)
        except ValueError:
            status, body = "400 Bad Request", b'{"error": "start and count are integers"}'
        else:
            end = min(start + count, len(table))
            body = to_json([table[records.key(position(p))] for p in range(start, end)])
    elif path == "/stats":
        body = to_json({"pid": os.getpid(), "rows": len(table), "table": TABLE_KIND,
                        "table_bytes": table_bytes})
    else:
        status, body = "404 Not Found", b"{}"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]
