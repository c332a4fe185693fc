"""Typing: the views are generic at runtime; the stubs type-check a sample with mypy.

mypy is Debian's python3-mypy, a package of /usr/bin/python3: the mypy cases run where the
interpreter running the tests can import it and are skipped, saying so, elsewhere. The stubs are
the same files for every interpreter (python/permafrost/*.pyi, copied next to each build).
"""
import importlib.util
import os
import re
import runpy
import subprocess
import sys
import tempfile
import types
import unittest

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet


class RuntimeGenerics(unittest.TestCase):
    def test_views_can_be_subscripted(self):
        for alias, origin, args in ((FrozenDict[str, int], FrozenDict, (str, int)),
                                    (FrozenList[str], FrozenList, (str,)),
                                    (FrozenSet[int], FrozenSet, (int,))):
            with self.subTest(alias=alias):
                self.assertIsInstance(alias, types.GenericAlias)
                self.assertIs(alias.__origin__, origin)
                self.assertEqual(alias.__args__, args)

    def test_annotations_evaluate(self):
        def lookup(table: FrozenDict[str, FrozenList[int]], key: str) -> int:
            return table[key][0]

        self.assertEqual(lookup(permafrost.freeze({"k": [7]}), "k"), 7)
        self.assertEqual(lookup.__annotations__["table"], FrozenDict[str, FrozenList[int]])


SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing_samples")
HAVE_MYPY = importlib.util.find_spec("mypy") is not None
NO_MYPY = (f"mypy is not importable by {sys.executable} (Debian's python3-mypy serves "
           "/usr/bin/python3; the stubs are the same files for every interpreter)")


def package_parent():
    """The directory holding the permafrost package under test (stubs and module)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(permafrost.__file__)))


class Stubs(unittest.TestCase):
    def test_the_package_ships_its_stubs_and_py_typed(self):
        pkg = os.path.dirname(os.path.abspath(permafrost.__file__))
        for name in ("py.typed", "__init__.pyi", "_core.pyi"):
            with self.subTest(name=name):
                self.assertTrue(os.path.isfile(os.path.join(pkg, name)), name)

    def test_the_typed_sample_runs(self):
        # The sample mypy checks is real code: it must also run.
        runpy.run_path(os.path.join(SAMPLES, "uses.py"), run_name="typing_sample")

    @unittest.skipUnless(HAVE_MYPY, NO_MYPY)
    def test_mypy_accepts_the_sample_and_reports_each_misuse(self):
        uses = os.path.join(SAMPLES, "uses.py")
        misuse = os.path.join(SAMPLES, "misuse.py")
        expected = set()
        with open(misuse) as f:
            for number, line in enumerate(f, 1):
                if m := re.search(r"# error: ([a-z-]+)$", line):
                    expected.add((number, m.group(1)))
        self.assertGreaterEqual(len(expected), 8)
        with tempfile.TemporaryDirectory() as cache:
            run = subprocess.run(
                [sys.executable, "-m", "mypy", "--strict", "--show-error-codes",
                 "--no-error-summary", "--cache-dir", cache, uses, misuse],
                env=dict(os.environ, MYPYPATH=package_parent()), capture_output=True, text=True,
                timeout=300)
        errors = re.findall(r"^(.*?):(\d+): error: .*\[([a-z-]+)\]$", run.stdout, re.M)
        # mypy names a file under its working directory by a relative path.
        errors = [(os.path.abspath(path), line, code) for path, line, code in errors]
        self.assertEqual([e for e in errors if e[0] != misuse], [],
                         "the sample of correct uses has type errors:\n" + run.stdout + run.stderr)
        got = {(int(line), code) for path, line, code in errors if path == misuse}
        self.assertEqual(got, expected, run.stdout + run.stderr)
        self.assertEqual(run.returncode, 1)

    @unittest.skipUnless(HAVE_MYPY, NO_MYPY)
    @unittest.skipUnless(importlib.util.find_spec("flask"),
                         "stubtest imports every submodule, and permafrost.flask needs Flask")
    def test_stubtest_finds_the_stubs_true_to_the_runtime(self):
        # Every public name and signature of the stubs (permafrost.flask's included) against the
        # imported modules; the allowlist names the mutators left out of the stubs on purpose.
        with tempfile.TemporaryDirectory() as cache:
            run = subprocess.run(
                [sys.executable, "-m", "mypy.stubtest", "permafrost", "--concise",
                 "--allowlist", os.path.join(SAMPLES, "stubtest_allowlist.txt"),
                 "--mypy-config-file", os.path.join(SAMPLES, "mypy.ini")],
                env=dict(os.environ, MYPYPATH=package_parent(), PYTHONPATH=package_parent(),
                         MYPY_CACHE_DIR=cache),
                capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
