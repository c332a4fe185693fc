"""python -m permafrost: build an image from JSON Lines, CSV or JSON, and describe an image.

    python -m permafrost build --jsonl FILE --key FIELD -o OUT.pfi   one record per line, keyed
    python -m permafrost build --csv FILE --key COLUMN -o OUT.pfi    one record per row (str values)
    python -m permafrost build --json FILE -o OUT.pfi                one top-level object or array
    python -m permafrost info OUT.pfi                                size, root, count, metadata

build streams the input into permafrost.build_dict (with --key; an object's items for --json) or
permafrost.build_list (without), one parsed record at a time; the command's memory is then what
the builders hold (each record is frozen into the arena and released before the next one is
parsed: with --key its key word and fields stay, 4 to 8 bytes each; without, a word). --json reads the whole document
first. Duplicate keys: the last record wins, as in dict(). Progress goes to stderr at most once
per --progress seconds (-q: none). A bad record (invalid JSON, no key field, not an object, a
CSV header naming a column twice) stops the build with FILE:LINE and the reason, and nothing is
written (an existing OUT stays as it was). The input may be a pipe or FIFO ("-": standard
input); OUT is a file (workers map it), so "-o -" is refused. Exit status: 0 done, 1 a bad input or an unwritable output (one line on stderr), 2 a
usage error, 130, 143 or 129 stopped by Ctrl-C, SIGTERM or SIGHUP (nothing written).

info opens the image (its checksum is verified and its graph walked, as permafrost.open does) and
prints its file size, root type, number of items at the root, image id (its metadata) and that
the checksum was verified; a damaged or non-image file is exit status 1 with the reason.
"""
import argparse
import csv
import errno
import io
import json
import math
import os
import re
import signal
import stat
import sys
import threading
import time

import permafrost
from permafrost import _core, _stores

PROG = "python -m permafrost"


class InputError(Exception):
    """A record the build cannot take, with where it is (FILE:LINE: reason)."""


class Progress:
    """Throttled progress lines on stderr: records so far, and bytes read of the input's size."""

    def __init__(self, name, stream, every):
        self.name, self.stream, self.every = name, stream, every
        self.records = 0
        self.total = _size_of(stream)
        self.start = self.last = time.monotonic()

    def tick(self):
        self.records += 1
        if self.every is None or self.records & 1023:  # the clock is read every 1024 records
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.report(now)

    def report(self, now):
        done = f"{self.records:,} records"
        try:
            pos = self.stream.tell() if self.total else None
        except (OSError, ValueError):
            pos = None
        if pos is not None:
            done += f", {pos / self.total:.0%} of {self.total / 2**20:,.1f} MiB"
        _note(f"{PROG} build: {self.name}: {done}, {now - self.start:.0f} s")


def _note(line):
    """A progress or summary line on stderr, which decides nothing: a closed or full stderr
    (`2>&1 | head -1`, 2>/dev/full) made the build fail, or exit 1 after writing the image."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # ValueError: sys.stderr closed by the caller
        pass


def _same_file(stream, path):
    """True when path names the file the input stream reads (the output would replace it)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _size_of(stream):
    """The input's size when it is a regular file (progress in percent), else None."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) and st.st_size else None


def _open_input(path):
    if path == "-":
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise InputError("-: cannot read: standard input is closed")
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None


def _field(record, key, where):
    if not isinstance(record, dict):
        raise InputError(f"{where}: --key needs an object, this record is "
                         f"{type(record).__name__}")
    try:
        value = record[key]
    except KeyError:
        raise InputError(f"{where}: no field {key!r} in the record") from None
    if isinstance(value, (list, dict)):  # else build_dict's TypeError, which names no line
        kind = "array" if isinstance(value, list) else "object"
        raise InputError(f"{where}: field {key!r} is a JSON {kind}: a key must be a string, a "
                         f"number, true, false or null")
    return value


# json's parser recurses once per level and stops at the interpreter's recursion limit (~1,000).
_TOO_DEEP = (f"nested too deeply for json's parser (at most about {sys.getrecursionlimit():,} "
             f"levels of arrays and objects)")


_JSON_WHITESPACE = b" \t\r\n"  # what JSON (RFC 8259) calls whitespace


def jsonl_records(name, stream, progress):
    """(FILE:LINE, value) of each non-blank line of a JSON Lines stream."""
    for number, line in enumerate(stream, 1):
        if not line.strip(_JSON_WHITESPACE):  # not bytes.strip(): json rejects \v, \f, \x1c...
            continue
        try:
            box = [json.loads(line)]
        except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
            raise InputError(f"{name}:{number}: not valid JSON: {e}") from None
        except RecursionError:
            raise InputError(f"{name}:{number}: {_TOO_DEEP}") from None
        progress.tick()
        yield f"{name}:{number}", box.pop()  # see _HANDED_OVER


def _csv_lines(name, stream):
    """The lines of a CSV byte stream as str, split as open(newline="") splits them (at \n, \r\n
    and a lone \r, each kept), one at a time: a byte that is not UTF-8 is reported with its line
    (a TextIOWrapper decodes ahead in 8 KiB chunks, so csv's line count was hundreds off)."""
    number = 0
    encoding = "utf-8-sig"  # a spreadsheet's "CSV UTF-8" starts with a BOM: not the first name's
    for raw in stream:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            line = number + 1 + raw.count(b"\r", 0, e.start) - raw.count(b"\r\n", 0, e.start)
            raise InputError(f"{name}:{line}: not UTF-8: {e}") from None
        encoding = "utf-8"
        cr = text.count("\r")
        if cr > 1 or cr == 1 and not text.endswith(("\r\n", "\r")):
            # Old Mac line ends inside: each is a line, as in a file opened with newline="".
            for piece in _LONE_CR.split(text):
                if piece:
                    number += 1
                    yield piece
        else:
            number += 1
            yield text


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def csv_records(name, stream, progress, key):
    """(FILE:LINE, row as a dict of str) of each CSV row after the header."""
    reader = csv.DictReader(_csv_lines(name, stream), strict=True)
    lines = reader.reader  # its line_num is the line read last, also when a row fails
    try:
        names = reader.fieldnames
        if names is None:
            raise InputError(f"{name}: empty (no header row)")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"{name}:{lines.line_num}: column {twice[0]!r} is named twice in the "
                             f"header (each row would keep only its last value)")
        if key is not None and key not in names:
            raise InputError(f"{name}:{lines.line_num}: no column {key!r} (columns: "
                             f"{', '.join(map(repr, names))})")  # repr: one line, whatever names
        for row in reader:
            if None in row or None in row.values():
                raise InputError(f"{name}:{lines.line_num}: {len(names)} columns expected")
            progress.tick()
            box = [row]
            del row
            yield f"{name}:{lines.line_num}", box.pop()  # see _HANDED_OVER
    except csv.Error as e:
        # Not reader.line_num: DictReader's count is the last good row's, not the failing line.
        raise InputError(f"{name}:{lines.line_num}: not valid CSV: {e}") from None


def json_document(name, stream):
    try:
        return json.load(stream)
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise InputError(f"{name}: not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{name}: {_TOO_DEEP}") from None


def _reading(name, records):
    """records, with a read error of the input (EIO, a network file system's ESTALE...) named
    as FILE: cannot read, as opening errors are (it was a bare "[Errno 5] Input/output error")."""
    try:
        yield from records
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror or e}") from None


# _HANDED_OVER: the generators that read records hold none while the builder has it (each yields
# it out of a box it empties, not from a local). build_dict stores a record as a row of a table
# only when nothing else holds it (a record held elsewhere may be reached again, and a row cannot
# be shared): with the chain's locals holding each record, no CLI image had a table, about twice
# the bytes of one built from a plain generator, and a check entry per record at every open.


def _keyed(records, key):
    for where, record in records:
        box = [record]
        del record
        yield _field(box[0], key, where), box.pop()  # see _HANDED_OVER


def _values(records):
    for _, record in records:
        box = [record]
        del record
        yield box.pop()  # see _HANDED_OVER


def _taking(name, doc):
    """(NAME[i], item) of each item of the list doc, which it empties: see _HANDED_OVER."""
    doc.reverse()
    for i in range(len(doc)):
        yield f"{name}[{i}]", doc.pop()


def build(args):
    """Streams the input into build_dict/build_list saved at args.output; returns the root view."""
    kind, name = next((k, v) for k, v in (("jsonl", args.jsonl), ("csv", args.csv),
                                          ("json", args.json)) if v is not None)
    # Before reading any input: a long build must not fail at its end for these.
    if not args.output:
        raise InputError("-o: cannot write: the output path is empty")
    if args.output == "-":  # "-" is standard input for the input; an image cannot be a pipe
        raise InputError("-o -: cannot write an image to standard output (workers map it from "
                         "a file): name a path, ./- for a file named -")
    if os.path.isdir(args.output):
        raise InputError(f"{args.output}: cannot write: it is a directory (-o names the image)")
    out_dir = os.path.dirname(_stores.absolute_path(args.output))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"{args.output}: cannot write: {out_dir} is not a writable directory")
    try:  # a name the file system refuses failed only at the end, when the image was renamed
        os.stat(args.output)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise InputError(f"{args.output}: cannot write: {e.strerror}") from None
    if args.name is not None:
        try:
            args.name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"--name {args.name!r}: an arena's name must be text (bytes that "
                             "are not UTF-8 were given)") from None
    stream = _open_input(name)
    try:
        if _same_file(stream, args.output):
            raise InputError(f"{args.output}: cannot write: it is the input {name} (the image "
                             "would replace it)")
        progress = Progress(name, stream, None if args.quiet else args.progress)
        common = {"path": args.output, "name": args.name}
        if kind == "json":
            doc = json_document(name, stream)
            if isinstance(doc, dict):
                if args.key is not None:
                    raise InputError(f"{name}: --key is for an array of objects; this is one "
                                     f"object, whose own keys are used")
                return permafrost.build_dict(doc.items(), **common)
            if not isinstance(doc, list):
                raise InputError(f"{name}: a top-level object or array is needed, not "
                                 f"{type(doc).__name__}")
            records = _taking(name, doc)
            del doc
        elif kind == "jsonl":
            records = _reading(name, jsonl_records(name, stream, progress))
        else:
            records = _reading(name, csv_records(name, stream, progress, args.key))
        if args.key is None:
            return permafrost.build_list(_values(records), **common)
        return permafrost.build_dict(_keyed(records, args.key), **common)
    finally:
        if stream is not getattr(sys.stdin, "buffer", None):  # sys.stdin is None under <&-
            stream.close()


def info(path):
    """The lines `info` prints for the image at path."""
    size = os.path.getsize(path)
    # The store, not the root: a root may be a scalar or a tuple, which has no close() or _ref().
    store = _stores.image_store(_stores.absolute_path(path))
    try:
        root = _core._store_view(store, 0)
        lines = [f"{path}: permafrost image",
                 f"  file size   {size:,} bytes ({size / 2**20:,.1f} MiB)",
                 f"  root type   {type(root).__name__}",
                 f"  count       {len(root):,}" if hasattr(root, "__len__") else
                 f"  value       {root!r}",
                 f"  image id    {_core._store_id(store)}",
                 "  checksum    verified (XXH3-64 of the data; every node's bounds checked)"]
    finally:
        _core._close(store)
    return lines


def _print_info(lines):
    """Prints `info`'s lines on stdout: 0, or 1 with a line on stderr when they could not be
    written. They are the command's whole output, so a closed stdout (`>&-`, where sys.stdout is
    None and print() writes nothing) or a full one (>/dev/full) exited 0 having printed nothing."""
    try:
        if sys.stdout is None:
            raise OSError(errno.EBADF, "standard output is closed")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return 0
    except (OSError, ValueError) as e:  # ValueError: sys.stdout closed by the caller
        if sys.stdout is not None:
            # What the failed flush left in the buffer would fail again at exit, with a traceback.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        if not isinstance(e, BrokenPipeError):  # `info img | head -1`: the reader had enough
            _note(f"{PROG} info: cannot write to standard output: {e}")
        return 1


def _seconds(text):
    """--progress's value: a number of seconds, 0 or more (inf: no progress lines)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too: it would turn progress off without a word
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def parse(argv):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an image from JSON Lines, CSV or JSON")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--jsonl", metavar="FILE", help="one JSON value per line ('-': stdin)")
    src.add_argument("--csv", metavar="FILE", help="CSV with a header row; values stay str")
    src.add_argument("--json", metavar="FILE", help="one top-level object or array")
    b.add_argument("--key", metavar="FIELD", help="make a dict keyed by this field of each "
                   "record (default: a list of the records)")
    b.add_argument("-o", "--output", metavar="OUT", required=True, help="the image to write")
    b.add_argument("--name", help="the arena's name while building (/proc/PID/maps, reports)")
    b.add_argument("--progress", metavar="SECONDS", type=_seconds, default=2.0,
                   help="at most one progress line per SECONDS on stderr (default 2)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress or summary lines")
    i = sub.add_parser("info", help="describe an image (checksum verified)")
    i.add_argument("image")
    return ap.parse_args(argv)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a build (a timeout, a service stop, a closed terminal): unwinds as
    Ctrl-C does, so the builders save nothing, instead of dying with a temporary file of the
    output half-written beside it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def _file_identity(path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def main(argv=None):
    args = parse(argv)
    before = _file_identity(args.output) if args.command == "build" else None
    handlers = {}
    if args.command == "build" and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_DFL:  # not one the caller ignores (nohup)
                handlers[signum] = signal.signal(signum, _stop)
    try:
        if args.command == "info":
            return _print_info(info(args.image))
        t = time.monotonic()
        root = build(args)
        try:
            if not args.quiet:
                items = f"{len(root):,} item" + ("" if len(root) == 1 else "s")
                _note(f"{PROG} build: wrote {args.output}: {type(root).__name__} of {items}, "
                      f"{os.path.getsize(args.output) / 2**20:,.1f} MiB "
                      f"in {time.monotonic() - t:.1f} s")
        finally:
            root.close()
        return 0
    except InputError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
    except (OSError, ValueError, TypeError) as e:  # an unwritable output, a damaged image...
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
    except KeyboardInterrupt as e:  # the builders saved nothing; one line, not a traceback
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        what = "interrupted" if signum == signal.SIGINT else \
            f"stopped by {signal.Signals(signum).name}"
        if args.command == "build":
            # A signal that came while the image was being saved (C++, which does not stop for
            # it) is raised once the complete file is in place.
            written = _file_identity(args.output) not in (None, before)
            what += f"; {args.output} was written in full first" if written else \
                "; nothing written"
        print(f"{PROG} {args.command}: {what}", file=sys.stderr)
        return 128 + signum
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return 1


if __name__ == "__main__":
    sys.exit(main())
