"""A Flask app for test_native: the same application code serves a plain dict table
(PF_APP_MODE=dict) and a permafrost.freeze_native() one (PF_APP_MODE=native), loaded before fork
(gunicorn --preload).

GET /user/KEY returns jsonify(rec), GET /raw/KEY returns rec itself (Flask serialises a dict),
GET /scan/N a list of 50 records; /pid and /arena are for the test.
"""
import os

from flask import Flask, jsonify

import permafrost

ROWS = int(os.environ.get("PF_APP_ROWS", "20000"))

table = {"user:%07d" % i: {"name": "name-%d" % i, "id": i, "score": i / 3.0,
                           "tags": ["t%d" % (i % 7), i % 5], "city": "Zürich", "ok": i % 2 == 0}
         for i in range(ROWS)}
if os.environ.get("PF_APP_MODE") == "native":
    table = permafrost.freeze_native(table, name="flask-table")

app = Flask(__name__)


# ----- the application: the code a dict-based app already has --------------------------------

@app.route("/user/<key>")
def user(key):
    rec = table[key]
    return jsonify(rec)


@app.route("/raw/<key>")
def raw(key):
    rec = table[key]
    return rec


@app.route("/scan/<int:start>")
def scan(start):
    return jsonify([table["user:%07d" % ((start + j) % ROWS)] for j in range(50)])


# ----- for the test ---------------------------------------------------------------------------

@app.route("/pid")
def pid():
    return str(os.getpid())


@app.route("/arena")
def arena():
    a = permafrost.native_arena(table)
    return jsonify([a.address, a.size])
