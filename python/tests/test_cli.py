"""The command line: `python -m permafrost build` from JSON Lines, CSV and JSON into an image, and
`python -m permafrost info`. Each case runs the module in a child interpreter (this one, with this
PYTHONPATH), as a build pipeline would, and checks its exit status, stderr and the image."""
import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import permafrost


def run(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "permafrost", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


class Build(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.out = self.path("out.pfi")

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def build(self, *args, ok=True):
        proc = run("build", *args, "-o", self.out)
        self.assertEqual(proc.returncode, 0 if ok else 1, proc.stderr)
        return proc

    def image(self):
        with permafrost.open(self.out) as root:
            return root.thaw()

    def test_jsonl_with_key_is_a_dict_of_the_records(self):
        src = self.write("r.jsonl", '{"id": "a", "n": 1, "t": [1, 2]}\n\n{"id": "b", "n": null}\n')
        proc = self.build("--jsonl", src, "--key", "id")
        self.assertEqual(self.image(), {"a": {"id": "a", "n": 1, "t": [1, 2]},
                                        "b": {"id": "b", "n": None}})
        self.assertIn("wrote %s: FrozenDict of 2 items" % self.out, proc.stderr)

    def test_jsonl_without_key_is_a_list(self):
        src = self.write("r.jsonl", '1\n"two"\n[3]\n')
        self.build("--jsonl", src)
        self.assertEqual(self.image(), [1, "two", [3]])
        src = self.write("one.jsonl", '{"k": 1}\n')
        proc = self.build("--jsonl", src)
        self.assertIn("wrote %s: FrozenList of 1 item, " % self.out, proc.stderr)  # not "1 items"

    def test_duplicate_keys_the_last_record_wins(self):
        src = self.write("r.jsonl", '{"k": 1, "v": "old"}\n{"k": 2}\n{"k": 1, "v": "new"}\n')
        self.build("--jsonl", src, "--key", "k")
        self.assertEqual(self.image(), {1: {"k": 1, "v": "new"}, 2: {"k": 2}})

    def assert_failed_without_output(self, proc, *fragments):
        self.assertEqual(proc.returncode, 1, proc.stderr)
        for fragment in fragments:
            self.assertIn(fragment, proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertFalse(os.path.exists(self.out), "a failed build wrote its output")
        self.assertEqual(os.listdir(self.dir.name), [n for n in os.listdir(self.dir.name)
                                                     if not n.startswith("out.pfi")])

    def test_a_record_without_the_key_field_names_its_line(self):
        src = self.write("r.jsonl", '{"id": 1}\n{"id": 2}\n{"name": "x"}\n')
        self.assert_failed_without_output(self.build("--jsonl", src, "--key", "id", ok=False),
                                          "%s:3: no field 'id'" % src)

    def test_a_key_field_that_is_an_array_or_object_names_its_line(self):
        # It failed with build_dict's "obj.keys()[0]: list is not supported", naming no line.
        for value, kind in (("[1]", "array"), ('{"a": 1}', "object")):
            src = self.write("r.jsonl", '{"id": 1}\n{"id": %s}\n' % value)
            self.assert_failed_without_output(self.build("--jsonl", src, "--key", "id", ok=False),
                                              "%s:2: field 'id' is a JSON %s" % (src, kind))

    def test_records_become_a_table_from_every_input_format(self):
        # The reading chain's locals held each record while build_dict froze it, and a record
        # held elsewhere is stored as a dict, not as a row: no CLI image had a table (about
        # twice the bytes of one built by build_dict from a plain generator).
        from test_tables import KIND_TABLE, graph_bytes, root_offset
        rows = [{"id": str(i), "name": "user%d" % i, "city": "c%d" % (i % 7)} for i in range(50)]
        sources = {
            "--jsonl": self.write("r.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
            "--json": self.write("r.json", json.dumps(rows)),
            "--csv": self.write("r.csv", "id,name,city\n" + "".join(
                "%(id)s,%(name)s,%(city)s\n" % r for r in rows)),
        }
        for option, src in sources.items():
            with self.subTest(option):
                self.build(option, src, "--key", "id")
                with permafrost.open(self.out) as image:
                    self.assertEqual(image, {r["id"]: r for r in rows})
                    data = graph_bytes(image)
                    self.assertEqual(data[root_offset(data)], KIND_TABLE)

    def test_a_record_that_is_not_an_object_names_its_line(self):
        src = self.write("r.jsonl", '{"id": 1}\n[1, 2]\n')
        self.assert_failed_without_output(self.build("--jsonl", src, "--key", "id", ok=False),
                                          "%s:2: --key needs an object" % src)

    def test_a_bad_json_line_names_its_line_and_keeps_the_old_image(self):
        permafrost.freeze({"old": True}).save(self.out)
        src = self.write("r.jsonl", '{"id": 1}\n{"id": 2}\n{"id": 3,,}\n{"id": 4}\n')
        proc = self.build("--jsonl", src, "--key", "id", ok=False)
        self.assertIn("%s:3: not valid JSON" % src, proc.stderr)
        self.assertEqual(self.image(), {"old": True})

    def test_an_unwritable_output_fails_before_reading_the_input(self):
        src = self.write("r.jsonl", "1\n")
        self.out = self.path("no-such-dir/out.pfi")
        proc = self.build("--jsonl", src, ok=False)
        self.assertIn("cannot write", proc.stderr)
        self.assertIn("no-such-dir", proc.stderr)

    def test_an_output_that_is_a_directory_fails_before_reading_the_input(self):
        src = self.write("r.jsonl", "not json\n")  # read first, this error would be reported
        os.mkdir(self.out)
        proc = self.build("--jsonl", src, ok=False)
        self.assertIn("%s: cannot write: it is a directory" % self.out, proc.stderr)
        self.assertTrue(os.path.isdir(self.out))
        proc = run("build", "--jsonl", src, "-o", "")
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("the output path is empty", proc.stderr)

    def test_an_output_that_is_the_input_is_refused_and_the_input_kept(self):
        # It succeeded, replacing the JSON Lines with the image.
        src = self.write("r.jsonl", '{"id": "a"}\n')
        self.out = src
        proc = self.build("--jsonl", src, "--key", "id", ok=False)
        self.assertIn("%s: cannot write: it is the input %s" % (src, src), proc.stderr)
        with open(src) as f:
            self.assertEqual(f.read(), '{"id": "a"}\n')

    def test_an_output_name_too_long_or_a_name_not_utf8_fails_before_reading_the_input(self):
        src = self.write("r.jsonl", "not json\n")  # read first, this error would be reported
        self.out = self.path("x" * 256)
        proc = self.build("--jsonl", src, ok=False)
        self.assertIn("x" * 256 + ": cannot write: File name too long", proc.stderr)
        self.out = self.path("out.pfi")
        proc = subprocess.run([sys.executable, "-m", "permafrost", "build", "--jsonl", src,
                               "--name", b"bad\xff".decode("utf-8", "surrogateescape"), "-o",
                               self.out], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("--name 'bad\\udcff': an arena's name must be text", proc.stderr)

    def test_a_closed_or_full_stderr_does_not_decide_the_build(self):
        # Progress and summary lines are cosmetic: a closed pipe (`2>&1 | head -1`) made the
        # build fail with nothing written, a full one (2>/dev/full) exit 1 after writing.
        src = self.write("r.jsonl", "".join('{"id": %d}\n' % i for i in range(5000)))
        for stderr in ("/dev/full", "closed pipe"):
            with self.subTest(stderr=stderr):
                if os.path.exists(self.out):
                    os.unlink(self.out)
                if stderr == "/dev/full":
                    sink = open("/dev/full", "w")
                else:
                    read_end, write_end = os.pipe()
                    os.close(read_end)
                    sink = os.fdopen(write_end, "w")
                with sink:
                    proc = subprocess.run([sys.executable, "-m", "permafrost", "build", "--jsonl",
                                           src, "--key", "id", "--progress", "0", "-o", self.out],
                                          stdout=subprocess.PIPE, stderr=sink, timeout=120)
                self.assertEqual(proc.returncode, 0)
                self.assertEqual(len(self.image()), 5000)

    def test_an_output_of_standard_output_is_refused_before_reading_the_input(self):
        src = self.write("r.jsonl", "not json\n")  # read first, this error would be reported
        proc = run("build", "--jsonl", src, "-o", "-", cwd=self.dir.name)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("-o -: cannot write an image to standard output", proc.stderr)
        self.assertFalse(os.path.exists(self.path("-")))

    def test_a_progress_interval_that_is_nan_or_negative_is_a_usage_error(self):
        src = self.write("r.jsonl", '{"key": "a"}\n')
        for value in ("nan", "-1", "soon"):
            with self.subTest(value=value):
                proc = run("build", "--jsonl", src, "--progress", value, "-o", self.out)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn("is not a number of seconds, 0 or more", proc.stderr)
                self.assertFalse(os.path.exists(self.out))

    def test_a_line_of_whitespace_json_does_not_accept_is_a_bad_record(self):
        for blank in ("\x0c", "\x0b", "\x1c"):
            with self.subTest(blank=repr(blank)):
                src = self.write("r.jsonl", '{"key": "a"}\n \t\r\n%s\n' % blank)
                proc = self.build("--jsonl", src, "--key", "key", ok=False)
                self.assert_failed_without_output(proc, "r.jsonl:3: not valid JSON")

    def test_a_missing_input_fails_clearly(self):
        self.assert_failed_without_output(
            self.build("--jsonl", self.path("absent.jsonl"), ok=False),
            "absent.jsonl: cannot read")

    def test_an_input_that_fails_to_read_names_it(self):
        # Opening succeeds and the first read fails (EIO): as a failing disk or NFS file does.
        for option in ("--jsonl", "--csv", "--json"):
            with self.subTest(option=option):
                self.assert_failed_without_output(
                    self.build(option, "/proc/self/mem", ok=False),
                    "/proc/self/mem: cannot read: Input/output error")

    def test_a_fifo_as_input_is_read_as_a_stream(self):
        fifo = self.path("in.fifo")
        os.mkfifo(fifo)

        def feed():
            with open(fifo, "w") as f:
                for i in range(3000):
                    f.write(json.dumps({"k": "key%d" % i, "i": i}) + "\n")
        writer = threading.Thread(target=feed)
        writer.start()
        try:
            self.build("--jsonl", fifo, "--key", "k")
        finally:
            writer.join()
        table = self.image()
        self.assertEqual(len(table), 3000)
        self.assertEqual(table["key2999"], {"k": "key2999", "i": 2999})

    def stop_while_reading(self, signum):
        """The build's stderr and exit status when signum reaches it while it reads a FIFO."""
        fifo = self.path("in.fifo")
        os.mkfifo(fifo)
        child = subprocess.Popen([sys.executable, "-m", "permafrost", "build", "--jsonl", fifo,
                                  "-o", self.out], stderr=subprocess.PIPE, text=True)
        try:
            with open(fifo, "w") as f:  # opens once the build has opened its input
                f.write('{"k": 1}\n')
                f.flush()
                time.sleep(0.3)
                child.send_signal(signum)
                _, stderr = child.communicate(timeout=60)
        finally:
            child.kill()
            child.wait()
        self.assertFalse(os.path.exists(self.out))
        self.assertEqual(os.listdir(self.dir.name), ["in.fifo"], "a temporary file was left")
        return child.returncode, stderr.strip().splitlines()

    def test_ctrl_c_is_one_line_exit_130_and_writes_nothing(self):
        self.assertEqual(self.stop_while_reading(signal.SIGINT), (130, [
            "python -m permafrost build: interrupted; nothing written"]))

    def test_sigterm_unwinds_as_ctrl_c_does(self):
        # It killed the build outright: during the save, that left the temporary file of a
        # half-written image beside the output.
        self.assertEqual(self.stop_while_reading(signal.SIGTERM), (143, [
            "python -m permafrost build: stopped by SIGTERM; nothing written"]))

    def test_a_signal_during_the_save_reports_the_image_written(self):
        # The save runs in C++, which does not stop for a signal: the handler raises once the
        # complete image is in place, and the message must not say nothing was written.
        from permafrost import __main__ as cli

        def build(args):
            permafrost.freeze({"k": 1}).save(args.output)
            raise cli.Stopped(signal.SIGTERM)
        saved, cli.build = cli.build, build
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                status = cli.main(["build", "--jsonl", "-", "-o", self.out])
        finally:
            cli.build = saved
        self.assertEqual(status, 143)
        self.assertEqual(stderr.getvalue(), "python -m permafrost build: stopped by SIGTERM; "
                                            "%s was written in full first\n" % self.out)
        self.assertEqual(self.image(), {"k": 1})
        self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL, "handler not restored")

    def test_standard_input(self):
        proc = run("build", "--jsonl", "-", "--key", "k", "-o", self.out, stdin='{"k": "x"}\n')
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(self.image(), {"x": {"k": "x"}})

    def test_closed_standard_input_fails_clearly(self):
        proc = subprocess.run([sys.executable, "-m", "permafrost", "build", "--jsonl", "-", "-o",
                               self.out], capture_output=True, text=True, timeout=120,
                              preexec_fn=lambda: os.close(0))  # as `python -m permafrost ... <&-`
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assert_failed_without_output(proc, "-: cannot read: standard input is closed")
        # A file input with standard input closed builds (it ended in an AttributeError
        # traceback after the image was written: sys.stdin is None then).
        src = self.write("r.jsonl", '{"k": "x"}\n')
        proc = subprocess.run([sys.executable, "-m", "permafrost", "build", "--jsonl", src,
                               "--key", "k", "-o", self.out], capture_output=True, text=True,
                              timeout=120, preexec_fn=lambda: os.close(0))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(self.image(), {"x": {"k": "x"}})

    def test_csv_rows_keyed_by_a_column_keep_str_values(self):
        src = self.write("r.csv", "id,name,n\nu1,ada,1\nu2,\"b, c\",2\n")
        self.build("--csv", src, "--key", "id")
        self.assertEqual(self.image(), {"u1": {"id": "u1", "name": "ada", "n": "1"},
                                        "u2": {"id": "u2", "name": "b, c", "n": "2"}})

    def test_csv_with_a_byte_order_mark_keeps_its_first_column_name(self):
        # Spreadsheets save "CSV UTF-8" with a BOM: it must not become part of the first name.
        src = self.write("r.csv", "\ufeffid,name\nu1,ada\n")
        self.build("--csv", src, "--key", "id")
        self.assertEqual(self.image(), {"u1": {"id": "u1", "name": "ada"}})

    def test_csv_without_the_key_column_names_the_columns(self):
        src = self.write("r.csv", "id,name\nu1,ada\n")
        self.assert_failed_without_output(self.build("--csv", src, "--key", "email", ok=False),
                                          "no column 'email' (columns: 'id', 'name')")
        # A name with a line break in it (quoted in the header) stays on the error's one line.
        src = self.write("r.csv", '"id\n",name\nu1,ada\n')
        proc = self.build("--csv", src, "--key", "id", ok=False)
        self.assertIn("(columns: 'id\\n', 'name')", proc.stderr)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)

    def test_csv_row_with_too_many_fields_names_its_line(self):
        src = self.write("r.csv", "id,name\nu1,ada\nu2,bob,extra\n")
        self.assert_failed_without_output(self.build("--csv", src, "--key", "id", ok=False),
                                          "%s:3: 2 columns expected" % src)

    def test_csv_bytes_that_are_not_utf8_name_their_line(self):
        # Decoded in 8 KiB chunks, the error was reported hundreds of lines early.
        rows = "".join("%d,x\n" % i for i in range(2000))
        src = self.path("r.csv")
        with open(src, "wb") as f:
            f.write(b"id,a\n" + rows.encode() + b"9,caf\xe9\n")
        self.assert_failed_without_output(self.build("--csv", src, "--key", "id", ok=False),
                                          "%s:2002: not UTF-8" % src)

    def test_csv_error_inside_a_row_names_the_row_s_line_not_the_previous_one(self):
        src = self.write("r.csv", "id,a\nu1,x\nu2,%s\n" % ("y" * 200000))
        self.assert_failed_without_output(self.build("--csv", src, "--key", "id", ok=False),
                                          "%s:3: not valid CSV: field larger" % src)

    def test_csv_lines_end_as_in_a_text_file(self):
        src = self.path("r.csv")
        with open(src, "wb") as f:  # old Mac \r, Windows \r\n, and both inside quotes
            f.write(b'id,a\r1,"x\ry"\r2,b\r\n3,"c\r\nd"\n4,e')
        self.build("--csv", src, "--key", "id")
        self.assertEqual(self.image(), {"1": {"id": "1", "a": "x\ry"}, "2": {"id": "2", "a": "b"},
                                        "3": {"id": "3", "a": "c\r\nd"}, "4": {"id": "4", "a": "e"}})

    def test_csv_header_naming_a_column_twice_is_refused(self):
        # DictReader keeps the last of two same-named columns: the other's values were lost.
        src = self.write("r.csv", "id,name,name\nu1,ada,lovelace\n")
        self.assert_failed_without_output(self.build("--csv", src, "--key", "id", ok=False),
                                          "%s:1: column 'name' is named twice" % src)

    def test_json_object_becomes_a_dict_and_array_a_list(self):
        src = self.write("o.json", '{"a": [1, 2], "b": {"c": null}}')
        self.build("--json", src)
        self.assertEqual(self.image(), {"a": [1, 2], "b": {"c": None}})
        os.unlink(self.out)
        src = self.write("a.json", '[{"id": 7, "x": 1}, {"id": 8}]')
        self.build("--json", src, "--key", "id")
        self.assertEqual(self.image(), {7: {"id": 7, "x": 1}, 8: {"id": 8}})

    def test_json_item_without_the_key_names_its_index(self):
        src = self.write("a.json", '[{"id": 7}, {"x": 1}]')
        self.assert_failed_without_output(self.build("--json", src, "--key", "id", ok=False),
                                          "%s[1]: no field 'id'" % src)

    def test_json_scalar_document_is_refused(self):
        src = self.write("s.json", '42')
        self.assert_failed_without_output(self.build("--json", src, ok=False),
                                          "a top-level object or array is needed, not int")

    def test_input_nested_deeper_than_json_parses_names_its_line(self):
        deep = "[" * 100000 + "]" * 100000
        src = self.write("d.jsonl", '{"k": 1}\n{"k": 2, "x": %s}\n' % deep)
        self.assert_failed_without_output(self.build("--jsonl", src, "--key", "k", ok=False),
                                          "%s:2: nested too deeply" % src)
        src = self.write("d.json", deep)
        self.assert_failed_without_output(self.build("--json", src, ok=False),
                                          "%s: nested too deeply" % src)

    def test_progress_is_throttled_and_quiet_prints_nothing(self):
        src = self.write("r.jsonl", "".join('{"k": %d}\n' % i for i in range(5000)))
        proc = self.build("--jsonl", src, "--key", "k", "--progress", "0")
        progress = [line for line in proc.stderr.splitlines() if " records" in line]
        # The clock is read once per 1024 records: 4 lines for 5000 records with no throttle.
        self.assertEqual(len(progress), 4, proc.stderr)
        self.assertIn("4,096 records, ", progress[-1])
        self.assertIn("% of ", progress[-1])
        os.unlink(self.out)
        proc = self.build("--jsonl", src, "--key", "k", "-q")
        self.assertEqual(proc.stderr, "")

    def test_usage_errors_exit_2(self):
        self.assertEqual(run("build", "--jsonl", "x").returncode, 2)  # no -o
        self.assertEqual(run("build", "--jsonl", "x", "--csv", "y", "-o", "z").returncode, 2)
        self.assertEqual(run().returncode, 2)


class Info(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.dir.name, "t.pfi")

    def tearDown(self):
        self.dir.cleanup()

    def test_info_shows_size_root_count_id_and_checksum(self):
        permafrost.freeze({"a": 1, "b": [2], "c": "x"}).save(self.out)
        proc = run("info", self.out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with permafrost.open(self.out) as root:
            image_id = root._ref()[2]
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[0], "%s: permafrost image" % self.out)
        self.assertIn("{:,} bytes".format(os.path.getsize(self.out)), lines[1])
        self.assertEqual(lines[2].split(), ["root", "type", "FrozenDict"])
        self.assertEqual(lines[3].split(), ["count", "3"])
        self.assertEqual(lines[4].split(), ["image", "id", image_id])
        self.assertIn("verified", lines[5])

    def test_info_of_an_image_whose_root_is_a_scalar_prints_the_value(self):
        # open() gives such a root (an int here: the root word holds it); info failed with
        # "'int' object does not support the context manager protocol".
        permafrost._core._save_bytes(b"pfpy\0v1\0" + struct.pack("<Q", (42 << 3) | 1), self.out)
        self.assertEqual(permafrost.open(self.out), 42)
        proc = run("info", self.out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[2].split(), ["root", "type", "int"])
        self.assertEqual(lines[3].split(), ["value", "42"])
        self.assertEqual(lines[4].split(), ["image", "id"])  # _save_bytes writes no id

    def test_info_of_a_damaged_image_fails_with_the_reason(self):
        permafrost.freeze(list(range(1000))).save(self.out)
        with open(self.out, "r+b") as f:
            f.seek(-100, os.SEEK_END)
            f.write(b"\xff" * 8)
        proc = run("info", self.out)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(self.out, proc.stderr)
        self.assertIn("checksum", proc.stderr)

    def test_info_of_a_file_that_is_not_an_image(self):
        with open(self.out, "w") as f:
            f.write("hello\n")
        proc = run("info", self.out)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(self.out, proc.stderr)


    def test_info_of_an_image_with_bytes_appended_fails_naming_them(self):
        permafrost.freeze(list(range(1000))).save(self.out)
        with open(self.out, "ab") as f:
            f.write(b"junk\n")
        proc = run("info", self.out)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(self.out, proc.stderr)
        self.assertIn("5 bytes after the end of the image", proc.stderr)

    def test_info_to_a_closed_or_full_stdout_fails_saying_so(self):
        # info's lines are its whole output: with stdout closed (>&-) it exited 0 having printed
        # nothing, and with a full one (>/dev/full) it left a traceback at exit.
        permafrost.freeze({"a": 1}).save(self.out)
        cases = {"closed": "exec 1>&-; ", "full": "exec 1>/dev/full; "}
        for name, redirect in cases.items():
            with self.subTest(stdout=name):
                proc = subprocess.run(["sh", "-c", redirect + '"$0" -m permafrost info "$1"',
                                       sys.executable, self.out],
                                      capture_output=False, stderr=subprocess.PIPE, text=True,
                                      timeout=120)
                self.assertEqual(proc.returncode, 1, proc.stderr)
                self.assertIn("info: cannot write to standard output", proc.stderr)
                self.assertNotIn("Traceback", proc.stderr)
                self.assertNotIn("Exception ignored", proc.stderr)

if __name__ == "__main__":
    unittest.main()
