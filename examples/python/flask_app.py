"""Flask under gunicorn --preload, serving the records table (records.py) as JSON.

    cd examples/python
    PF_TABLE=frozen gunicorn --preload -w 4 -b 127.0.0.1:8000 flask_app:app

The table is built in gunicorn's master before it forks the workers (--preload); PF_TABLE=frozen
(default) holds it with permafrost.freeze(), PF_TABLE=dict as a plain dict (the peer),
PF_TABLE=prebuilt opens the image file PF_IMAGE built offline (README, "Deploying"); PF_ROWS
sets the size of the others (default 500,000).

  GET /record/<key>                 jsonify(table[key]), e.g. /record/user:0000042
  GET /records?start=P&count=N      jsonify([...]) of the records at positions P..P+N-1 of a
                                    scrambled order of the table (keys from all over it)
  GET /stats                        {"pid", "rows", "table", "table_bytes"}

A frozen record is a FrozenDict, not a dict: permafrost.flask.JSONProvider lets jsonify() (and a
view returning the record itself) encode it, straight from the frozen bytes.
"""
import os

from flask import Flask, abort, jsonify, request

import records
from permafrost.flask import JSONProvider

TABLE_KIND = os.environ.get("PF_TABLE", "frozen")
table, table_bytes = records.load_table(TABLE_KIND)
position = records.scrambled(len(table))

app = Flask(__name__)
app.json = JSONProvider(app)  # jsonify() writes frozen records straight from their bytes


@app.get("/record/<key>")
def one_record(key):
    rec = table.get(key)
    if rec is None:
        abort(404)
    return jsonify(rec)


@app.get("/records")
def some_records():
    start = request.args.get("start", 0, type=int)
    count = request.args.get("count", 100, type=int)
    end = min(max(start, 0) + max(count, 0), len(table))
    return jsonify([table[records.key(position(p))] for p in range(max(start, 0), end)])


@app.get("/stats")
def stats():
    return jsonify(pid=os.getpid(), rows=len(table), table=TABLE_KIND, table_bytes=table_bytes)
