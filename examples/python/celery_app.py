"""A Celery app whose prefork pool serves the records table (records.py).

    cd examples/python
    PF_TABLE=prebuilt PF_IMAGE=/srv/data/records.pfi PF_CELERY_DIR=/tmp/celery \
        celery -A celery_app worker -P prefork -c 4 -O fair

Celery's worker imports this module in its main process and then forks its pool, so the table is
loaded once, before the fork: PF_TABLE=prebuilt opens the image file PF_IMAGE built offline
(README, "Deploying"), PF_TABLE=frozen builds it with permafrost.freeze(), PF_TABLE=dict as a
plain dict (the peer); PF_ROWS sets the size of the last two (default 500,000).

The broker and the result store are directories under PF_CELERY_DIR (celery_config.py). Tasks:
  rendezvous(n, tag)            waits until n pool processes run it at once (each takes one: -O
                                fair); returns the process's pid: every process answered
  read_part(n, tag, p, parts)   the same rendezvous, then reads every record at positions p,
                                p + parts, ... of a scrambled order of the table; returns
                                (pid, checksum)
"""
import os
import time

import celery_config
import records

DIR = os.environ.get("PF_CELERY_DIR", "/tmp/permafrost-celery")
app = celery_config.make_app(DIR)

TABLE_KIND = os.environ.get("PF_TABLE", "frozen")
table, table_bytes = records.load_table(TABLE_KIND)
position = records.scrambled(len(table))


def meet(n, tag):
    """Returns once n pool processes called meet(n, tag)."""
    here = os.path.join(DIR, "rendezvous", tag)
    os.makedirs(here, exist_ok=True)
    open(os.path.join(here, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 300
    while len(os.listdir(here)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("only %d of %d pool processes met" % (len(os.listdir(here)), n))
        time.sleep(0.01)


@app.task
def rendezvous(n, tag):
    meet(n, tag)
    return os.getpid()


@app.task
def read_part(n, tag, part, parts):
    meet(n, tag)
    total = 0
    for p in range(part, len(table), parts):
        total += records.checksum(table[records.key(position(p))])
    return os.getpid(), total


@app.task
def stats():
    return {"pid": os.getpid(), "rows": len(table), "table": TABLE_KIND,
            "table_bytes": table_bytes}
