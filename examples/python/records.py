"""The table every example under examples/python/ serves: user records, generated
deterministically (the same rows on every machine, no download).

    key(i)    "user:0000042"
    record(i) {"id": 42, "name": "Ada Okafor", "email": "ada.okafor42@example.org",
               "score": 37.21, "active": True, "tags": ["admin", "beta"],
               "address": {"city": "Lagos", "zip": "01302"}}

load_table(kind, rows) builds the table the way each example holds it before fork:
  "dict"    a plain dict of dicts (the peer: what a server holds today)
  "frozen"  permafrost.freeze() of that dict; the dict is dropped and its heap trimmed
  "image"   the frozen table saved to an image file and mapped with permafrost.open()
Sizes: PF_ROWS (default 500,000) rows.
"""
import gc
import os
import tempfile

import permafrost

ROWS = int(os.environ.get("PF_ROWS", "500000"))

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
         "Tony", "Margaret", "John", "Leslie", "Shafi", "Niklaus", "Hedy", "Guido", "Linus",
         "Katherine", "Dennis", "Sophie", "Bjarne", "Anita", "Vint"]
LAST = ["Okafor", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Hoare", "Hamilton", "Backus", "Lamport", "Goldwasser", "Wirth", "Lamarr",
        "Rossum", "Torvalds", "Johnson", "Ritchie", "Wilson", "Stroustrup", "Borg", "Cerf"]
CITIES = ["Lagos", "Lima", "Oslo", "Pune", "Quito", "Riga", "Seoul", "Tunis", "Utrecht",
          "Valencia", "Warsaw", "Xi'an", "Yerevan", "Zagreb", "Accra", "Bogota", "Cork"]
TAGS = ["admin", "beta", "staff", "trial", "partner", "legacy", "vip"]


def key(i):
    return "user:%07d" % i


def record(i):
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    return {"id": i, "name": first + " " + last,
            "email": "%s.%s%d@example.org" % (first.lower(), last.lower(), i),
            "score": (i * 7919 % 10007) / 100.0, "active": i % 3 != 0,
            "tags": [TAGS[i % 7], TAGS[(i // 7) % 7]],
            "address": {"city": CITIES[i % len(CITIES)], "zip": "%05d" % (i * 31 % 100000)}}


def checksum(rec):
    """What a client verifies of each record it receives (plain or frozen, or decoded JSON)."""
    return rec["id"] + len(rec["name"]) + len(rec["email"]) + len(rec["tags"]) + len(
        rec["address"]["city"]) + int(rec["active"])


def scrambled(rows):
    """A permutation of range(rows) that spreads neighbours over the whole table: position p
    holds (p * stride) % rows, stride coprime to rows. Requests for consecutive positions read
    records from everywhere, as random keys would."""
    from math import gcd
    stride = 7368787 % rows or 1
    while gcd(stride, rows) != 1:
        stride += 1
    return lambda p: (p * stride) % rows


def load_table(kind, rows=ROWS, keyed=True, image_dir=None):
    """The table held as kind ("dict", "frozen", "image" or "prebuilt"): {key(i): record(i)} when
    keyed, else [record(i)] (index -> record, as a Dataset holds it). "prebuilt" opens the image
    file named by $PF_IMAGE, built offline beforehand (README, "Deploying"): nothing is computed.
    Returns (table, table bytes): for "dict" the process's RSS growth while building it, else
    the frozen bytes."""
    if kind == "prebuilt":
        frozen = permafrost.open(os.environ["PF_IMAGE"])
        return frozen, permafrost._core._range(frozen)[1]
    before = permafrost.memory().rss
    plain = ({key(i): record(i) for i in range(rows)} if keyed
             else [record(i) for i in range(rows)])
    if kind == "dict":
        return plain, permafrost.memory().rss - before
    frozen = permafrost.freeze(plain, name="records")
    del plain
    gc.collect()
    permafrost.trim()  # hand the dropped dict's heap back before fork: workers would map it
    if kind == "image":
        path = os.path.join(image_dir or tempfile.gettempdir(), "records-%d-%d.pfi" % (
            rows, os.getpid()))
        frozen.save(path)
        del frozen
        frozen = permafrost.open(path)
    elif kind != "frozen":
        raise ValueError("kind must be 'dict', 'frozen', 'image' or 'prebuilt', not %r"
                         % (kind,))
    return frozen, permafrost._core._range(frozen)[1]
