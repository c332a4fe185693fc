"""Forked workers read frozen data without copying a page of it; writes die with the trap's report.

Page state is read from the kernel: permafrost._core._sharing_audit compares the worker's
/proc/PID/pagemap with the parent's over the frozen bytes (page frames when visible, else the
exclusive-mapping bit), and permafrost._core._private_pages counts Private_Dirty pages of the
range in smaps.
"""
import os
import signal
import subprocess
import sys
import textwrap
import unittest

import permafrost

WORKERS = 4


def make_table(n):
    return {"user:%07d" % i: {"name": "name-%d" % i, "id": i, "score": i / 7.0,
                              "tags": ["t%d" % (i % 5), i % 3, None]} for i in range(n)}


def read_everything(frozen):
    """A full lookup pass touching every field; returns a checksum."""
    total = 0
    for key in frozen:
        rec = frozen[key]
        total += len(rec["name"]) + rec["id"] + int(rec["score"]) + len(rec["tags"])
        for t in rec["tags"]:
            total += hash(t) & 1
    return total


def check_workers_copy_nothing(test, frozen, read, pages):
    """Forks WORKERS workers that each run read(frozen) while all are alive, and checks from this
    process that each got read's answer here, has no Private_Dirty page of the frozen bytes
    (smaps) and copied none of them (pagemap against this process's), having mapped at least 90%
    of the `pages` pages. frozen: a view, an object of a freeze_native() copy or its NativeArena
    (permafrost._sharing_audit takes any)."""
    expected = read(frozen)
    children = []
    for _ in range(WORKERS):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker: read everything, report, wait to be audited
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                ok = read(frozen) == expected
                private = permafrost._private_pages(frozen)
                os.write(ready_w, b"%d %d\n" % (int(ok), private))
                os.read(go_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        children.append((pid, ready_r, go_w))
    try:
        for pid, ready_r, _ in children:
            ok, private = os.read(ready_r, 64).split()
            test.assertEqual(ok, b"1", "worker %d read wrong values" % pid)
            test.assertEqual(int(private), 0, "worker %d has Private_Dirty arena pages" % pid)
            total, parent_present, child_present, shared, copied = \
                permafrost._sharing_audit(frozen, pid, os.getpid())
            test.assertEqual(total, pages)
            test.assertGreater(child_present, 0.9 * pages, "the worker read the whole table")
            test.assertEqual(copied, 0, "worker %d copied arena pages" % pid)
            test.assertEqual(shared, child_present)
    finally:
        for pid, ready_r, go_w in children:
            os.write(go_w, b"x")
            os.close(go_w)
            os.close(ready_r)
            _, status = os.waitpid(pid, 0)
            test.assertEqual(os.waitstatus_to_exitcode(status), 0)


def uss_growth_of(read):
    """How much a forked child's USS grows while it runs read(), in bytes."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            before = permafrost.memory().uss
            read()
            os.write(w, b"%d\n" % (permafrost.memory().uss - before))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    grown = int(os.read(r, 64))
    os.close(r)
    os.waitpid(pid, 0)
    return grown


class ForkedWorkers(unittest.TestCase):
    def test_four_forked_workers_copy_no_arena_page(self):
        frozen = permafrost.freeze(make_table(50000))
        _, size = permafrost._core._range(frozen)
        check_workers_copy_nothing(self, frozen, read_everything, (size + 4095) // 4096)

    def test_a_dict_is_copied_by_the_same_pass(self):
        # The contrast the package exists for (and a check that the audit can see copies): the
        # worker's USS grows by most of the dict when it only reads it.
        table = make_table(50000)
        self.assertGreater(uss_growth_of(lambda: read_everything(table)), 5 << 20)

    def test_memory_of_another_process(self):
        m = permafrost.memory(os.getppid())
        self.assertGreater(m.rss, 0)
        self.assertGreaterEqual(m.rss, m.uss)
        with self.assertRaises(ProcessLookupError):
            permafrost.memory(2**22 + 12345)

    def test_memory_of_a_process_this_one_may_not_read_is_a_permission_error(self):
        # It was ProcessLookupError, as for a process that does not exist. In a child that cannot
        # read its target: root's child as nobody reads its root parent; another user's, pid 1.
        child = os.fork()
        if child == 0:
            code = 1
            try:
                target = os.getppid() if os.getuid() == 0 else 1
                try:
                    if os.getuid() == 0:
                        os.setuid(65534)
                    with open(f"/proc/{target}/smaps_rollup", "rb"):
                        os._exit(4)  # readable after all: nothing to check here
                except PermissionError:
                    pass
                except OSError:
                    os._exit(4)  # no setuid here (a user namespace), or no such file
                try:
                    permafrost.memory(target)
                    code = 3
                except PermissionError as e:
                    code = 0 if e.errno == 13 and str(e).count("errno 13") == 1 else 5
                except BaseException:
                    code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 4:
            self.skipTest("no process this test may not read (not root, pid 1 readable)")
        self.assertEqual(code, 0, "3: the read succeeded, 2: another exception, 5: its errno "
                                  "or text is not errno 13 once")

    def test_memory_of_a_pid_out_of_range_is_no_process(self):
        # 2**32 once wrapped to 0, which the library reads as "this process".
        for pid in (0, -1, 2**32, 2**32 + os.getpid(), 2**70):
            with self.assertRaises(ProcessLookupError, msg=pid):
                permafrost.memory(pid)
        with self.assertRaises(TypeError):
            permafrost.memory("1")
        with self.assertRaises(ProcessLookupError):
            permafrost._core._memory(2**32)


class Trim(unittest.TestCase):
    def test_trim_returns_a_dropped_dict_to_the_kernel(self):
        table = make_table(100000)
        frozen = permafrost.freeze(table)
        before = permafrost.memory().rss
        del table
        import gc
        gc.collect()
        permafrost.trim()
        self.assertLess(permafrost.memory().rss, before - (10 << 20))
        self.assertEqual(len(frozen), 100000)


class WriteTrap(unittest.TestCase):
    def test_a_write_through_ctypes_dies_with_the_report(self):
        script = textwrap.dedent("""
            import ctypes, permafrost
            permafrost.install_write_trap()
            frozen = permafrost.freeze({"k": "v" * 100}, name="pytrap")
            address, size = permafrost._core._range(frozen)
            ctypes.memset(address + 24, 0, 1)
            print("survived")
        """)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=os.environ, timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGSEGV, proc.stderr)
        self.assertNotIn("survived", proc.stdout)
        self.assertIn('permafrost: write to frozen arena "pytrap" at offset 24', proc.stderr)

    def test_trap_from_the_environment(self):
        proc = subprocess.run([sys.executable, "-c", "import permafrost; "
                               "print(permafrost.write_trap_installed())"],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PERMAFROST_TRAP="1"))
        self.assertEqual(proc.stdout.strip(), "True", proc.stderr)


if __name__ == "__main__":
    unittest.main()
