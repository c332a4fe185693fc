"""The extension module itself: per-interpreter module state (PEP 489) and what it declares."""
import importlib.util
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import permafrost

# CPython's private subinterpreter module: _xxsubinterpreters up to 3.12, _interpreters from 3.13.
_interpreters = None
for _name in ("_interpreters", "_xxsubinterpreters"):
    if importlib.util.find_spec(_name):
        _interpreters = importlib.import_module(_name)
        break


def run_in_subinterpreter(code, own_gil):
    """Runs code in a new subinterpreter; returns None, or the text of the exception it raised.

    own_gil=False: the legacy configuration (shares the main GIL, as mod_wsgi's do)."""
    if hasattr(_interpreters, "exec"):  # 3.13+
        interp = _interpreters.create("isolated" if own_gil else "legacy")
        try:
            failure = _interpreters.exec(interp, code)
            return None if failure is None else failure.formatted
        finally:
            _interpreters.destroy(interp)
    interp = _interpreters.create(isolated=own_gil)
    try:
        _interpreters.run_string(interp, code)
        return None
    except _interpreters.RunFailedError as e:
        return str(e)
    finally:
        _interpreters.destroy(interp)


def run_fresh(script):
    """Runs script in a new process that has not imported permafrost, with run_in_subinterpreter
    defined (importing this module would import permafrost in its main interpreter first).
    Returns its stdout's words; fails the calling test with its stderr when it exits non-zero."""
    import inspect
    preamble = ("import importlib, importlib.util\n_interpreters = None\n"
                "for _name in ('_interpreters', '_xxsubinterpreters'):\n"
                "    if importlib.util.find_spec(_name):\n"
                "        _interpreters = importlib.import_module(_name)\n"
                "        break\n" + inspect.getsource(run_in_subinterpreter))
    out = subprocess.run([sys.executable, "-c", preamble + textwrap.dedent(script)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    if out.returncode != 0:
        raise AssertionError(f"exit {out.returncode}: {out.stderr}")
    return out.stdout.split()


@unittest.skipUnless(_interpreters, "this interpreter has no _interpreters/_xxsubinterpreters")
class Subinterpreters(unittest.TestCase):
    def test_a_subinterpreter_gets_its_own_module_and_types(self):
        # Every interpreter's module object has its own types and state: the Python half sets
        # methods on the types, and a type shared with another interpreter would carry the
        # functions (and objects) of whichever interpreter imported last.
        before = permafrost.freeze({"a": [1, 2]})
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "ids")
            code = ("import permafrost\n"
                    "d = permafrost.freeze({'x': [1, {'y': 2}]})\n"
                    "assert d['x'][1]['y'] == 2 and d.thaw() == {'x': [1, {'y': 2}]}\n"
                    "assert type(d['x']) is permafrost.FrozenList\n"
                    f"open({out!r}, 'w').write('%d %d' % (id(permafrost.FrozenDict),"
                    " id(permafrost._core)))\n")
            self.assertIsNone(run_in_subinterpreter(code, own_gil=False))
            with open(out) as f:
                sub_dict_type, sub_core = map(int, f.read().split())
        self.assertNotEqual(sub_dict_type, id(permafrost.FrozenDict))
        self.assertNotEqual(sub_core, id(permafrost._core))
        # This interpreter's views and types are untouched.
        self.assertIs(type(before["a"]), permafrost.FrozenList)
        self.assertEqual(before.thaw(), {"a": [1, 2]})
        self.assertEqual(permafrost.freeze({"b": {1}})["b"], {1})

    def test_dates_after_the_subinterpreter_that_used_them_first_is_gone(self):
        # datetime's C API was kept for the process from the first interpreter that used it: once
        # a subinterpreter that froze a date first was destroyed, the main interpreter refused
        # dates ("date is not supported") and read a saved one through the freed table (SIGSEGV).
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "dates.pfi")
            words = run_fresh(f"""
                failure = run_in_subinterpreter(
                    "import datetime, permafrost\\n"
                    "permafrost.freeze([datetime.date(2020, 1, 2)]).save({path!r})\\n",
                    own_gil=False)
                assert failure is None, failure
                import datetime, permafrost
                print(permafrost.freeze([datetime.date(2021, 1, 1)])[0])
                print(permafrost.open({path!r})[0])
                """)
        self.assertEqual(words, ["2021-01-01", "2020-01-02"])

    @unittest.skipUnless(sys.version_info >= (3, 12), "a GIL per interpreter exists from 3.12")
    def test_an_interpreter_with_its_own_gil_is_refused(self):
        # Declared with Py_mod_multiple_interpreters: the arena library's process-wide state
        # (1024 slots, the write trap's signal handler) is not promised to a second GIL.
        failure = run_in_subinterpreter("import permafrost", own_gil=True)
        self.assertIsNotNone(failure)
        self.assertIn("ImportError", failure)
        self.assertIn("does not support loading in subinterpreters", failure)


if __name__ == "__main__":
    unittest.main()
