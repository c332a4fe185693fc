"""Packaging: the sdist, wheels and the editable install (python/build_backend), checked the way
a user meets them: pip against a copy of the tree laid out from the sdist, fresh venvs (Debian's
python3-venv), an installed wheel run with no build tool on PATH, an edit to an editable
install's source seen without reinstalling, and the module's ELF header (stripped, no mimalloc).

One CMake build serves every case: the sdist is unpacked once, and `pip wheel` of its python/
directory (laid out as in the repository), `pip wheel` of the sdist's root and `pip install -e`
share PERMAFROST_BUILD_DIR (the editable install only relinks the module unstripped). That build
takes a minute or two on 2 shared cores, so it runs with Debian's python3 only; the API checks
(Exports) run on every interpreter."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile

import permafrost

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BACKEND = os.path.join(REPO, "python", "build_backend")
DEBIAN_PYTHON = "/usr/bin/python3"
# What the module may load: the C and C++ runtimes, nothing else (no libmimalloc, no libpython:
# an extension takes its symbols from the interpreter that loads it).
ALLOWED_NEEDED = {"libstdc++.so.6", "libgcc_s.so.1", "libc.so.6", "libm.so.6",
                  "ld-linux-x86-64.so.2"}


def cmake_version():
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        return re.search(r"project\(permafrost VERSION ([0-9.]+)", f.read()).group(1)


def run(cmd, **kwargs):
    """Runs cmd; on failure, raises AssertionError with its output."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kwargs)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode,
                                                       proc.stdout[-4000:]))
    return proc.stdout


def load_backend(directory):
    spec = importlib.util.spec_from_file_location(
        "permafrost_build_under_test", os.path.join(directory, "permafrost_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Exports(unittest.TestCase):
    def test_star_import_leaves_the_builtin_open_alone(self):
        namespace = {}
        exec("from permafrost import *", namespace)
        self.assertNotIn("open", namespace)
        self.assertIn("freeze", namespace)
        self.assertTrue(callable(permafrost.open))

    def test_version_is_the_cmake_projects(self):
        self.assertEqual(permafrost.__version__, cmake_version())


def packaging_skip_reason():
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON):
        return ("packaging is tested once, with Debian's python3 (its pip and python3-venv); "
                "this is %s" % sys.executable)
    for module, package in (("pip", "python3-pip"), ("venv", "python3-venv"),
                            ("ensurepip", "python3-venv")):
        if importlib.util.find_spec(module) is None:
            return "no %s module: install %s" % (module, package)
    if not shutil.which("cmake") or not shutil.which("c++"):
        return "no cmake or C++ compiler to build a wheel with"
    return None


@unittest.skipIf(packaging_skip_reason(), packaging_skip_reason())
class Packaging(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pf-packaging-")
        try:
            cls._build()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def _build(cls):
        tmp = cls.tmp
        backend = load_backend(BACKEND)
        cls.sdist = os.path.join(tmp, backend.build_sdist(tmp))
        with tarfile.open(cls.sdist) as tar:
            cls.sdist_names = tar.getnames()
            tar.extractall(os.path.join(tmp, "unpacked"))
        cls.tree = os.path.join(tmp, "unpacked", "permafrost-" + cmake_version())
        env = dict(os.environ, PERMAFROST_BUILD_DIR=os.path.join(tmp, "build"),
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
        env.pop("PYTHONPATH", None)  # the builds and venvs must not see the ctest build
        cls.env = env
        pip = [DEBIAN_PYTHON, "-m", "pip"]
        flags = ["--no-index", "--no-build-isolation", "--no-deps"]
        # `pip wheel ./python` in a tree laid out as the repository, then the sdist's own root.
        cls.wheel = cls._one_wheel(run(pip + ["wheel"] + flags + ["-w", os.path.join(tmp, "w1"),
                                             os.path.join(cls.tree, "python")], env=env),
                                   os.path.join(tmp, "w1"))
        cls.sdist_wheel = cls._one_wheel(run(pip + ["wheel"] + flags + ["-w", os.path.join(
            tmp, "w2"), cls.tree], env=env), os.path.join(tmp, "w2"))
        # A fresh venv with the wheel installed, and one with the editable install.
        cls.venv = os.path.join(tmp, "venv")
        run([DEBIAN_PYTHON, "-m", "venv", cls.venv], env=env)
        run([os.path.join(cls.venv, "bin", "python"), "-m", "pip", "install", "--no-index",
             cls.wheel], env=env)
        cls.editable_venv = os.path.join(tmp, "venv-editable")
        run([DEBIAN_PYTHON, "-m", "venv", cls.editable_venv], env=env)
        run([os.path.join(cls.editable_venv, "bin", "python"), "-m", "pip", "install",
             "--no-index", "--no-build-isolation", "-e", os.path.join(cls.tree, "python")],
            env=env)

    @staticmethod
    def _one_wheel(output, directory):
        wheels = [f for f in os.listdir(directory) if f.endswith(".whl")]
        if len(wheels) != 1:
            raise AssertionError("expected one wheel in %s: %s\n%s" % (directory, wheels, output))
        return os.path.join(directory, wheels[0])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def in_venv(self, venv, code):
        """Runs code with venv's python, PATH = the venv's bin/ alone (no cmake, no compiler),
        from a directory holding no permafrost."""
        return run([os.path.join(venv, "bin", "python"), "-c", code], cwd=self.tmp,
                   env={"PATH": os.path.join(venv, "bin"), "HOME": self.tmp})

    def test_the_wheel_runs_in_a_fresh_venv_without_build_tools(self):
        out = self.in_venv(self.venv, (
            "import shutil, sys, permafrost\n"
            "assert not [t for t in ('cmake', 'c++', 'g++', 'cc', 'make') if shutil.which(t)]\n"
            "t = permafrost.freeze({'a': [1, 'x', {'b': 2.5}]})\n"
            "assert t['a'][2]['b'] == 2.5 and t.thaw() == {'a': [1, 'x', {'b': 2.5}]}\n"
            "print(permafrost.__version__, permafrost.__file__.startswith(sys.prefix))\n"))
        self.assertEqual(out.split(), [cmake_version(), "True"])

    def test_a_wheel_built_from_the_sdist_equals_the_trees(self):
        with zipfile.ZipFile(self.wheel) as a, zipfile.ZipFile(self.sdist_wheel) as b:
            self.assertEqual(sorted(a.namelist()), sorted(b.namelist()))
            self.assertEqual(os.path.basename(self.wheel), os.path.basename(self.sdist_wheel))
            for name in a.namelist():
                if name.endswith(".py"):
                    self.assertEqual(a.read(name), b.read(name), name)

    def test_the_sdist_holds_the_module_build_and_nothing_else(self):
        base = "permafrost-%s/" % cmake_version()
        names = {n[len(base):] for n in self.sdist_names if n.startswith(base)}
        self.assertEqual(len(names), len(self.sdist_names), "everything under one directory")
        for needed in ("PKG-INFO", "pyproject.toml", "LICENSE", "README.md", "CMakeLists.txt",
                       "cmake/permafrostConfig.cmake.in", "include/permafrost/arena.hpp",
                       "src/CMakeLists.txt", "src/arena/arena.cpp", "src/image/image.cpp",
                       "src/os/os_linux.cpp", "python/CMakeLists.txt", "python/pyproject.toml",
                       "python/build_backend/permafrost_build.py", "python/permafrost/__init__.py",
                       "python/src/module.cpp"):
            self.assertIn(needed, names)
        for name in names:
            self.assertFalse(name.startswith(("src/heap/", "src/malloc/", "tests/", "bench/",
                                              "python/tests/", "build")), name)
            self.assertNotIn("__pycache__", name)

    def test_the_module_is_stripped_and_loads_no_mimalloc(self):
        if not shutil.which("readelf"):
            self.skipTest("readelf (binutils) is not installed")
        so = self._extract_module()
        sections = run(["readelf", "-S", "-W", so])
        self.assertNotIn(".debug_info", sections)
        self.assertNotIn(".symtab", sections)
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                                run(["readelf", "-d", so])))
        self.assertTrue(needed, "readelf listed no NEEDED entry")
        self.assertLessEqual(needed, ALLOWED_NEEDED)
        if shutil.which("ldd"):
            self.assertNotIn("mimalloc", run(["ldd", so]))

    def _extract_module(self):
        with zipfile.ZipFile(self.wheel) as z:
            [name] = [n for n in z.namelist() if n.endswith(".so")]
            return z.extract(name, os.path.join(self.tmp, "extracted"))

    def test_metadata(self):
        with zipfile.ZipFile(self.wheel) as z:
            dist_info = "permafrost-%s.dist-info/" % cmake_version()
            meta = z.read(dist_info + "METADATA").decode()
            self.assertTrue(z.read(dist_info + "LICENSE").startswith(b"MIT License"))
            record = z.read(dist_info + "RECORD").decode()
        headers, _, description = meta.partition("\n\n")
        fields = [line.split(": ", 1) for line in headers.splitlines()]
        values = {}
        for k, v in fields:
            values.setdefault(k, []).append(v)
        self.assertEqual(values["Name"], ["permafrost"])
        self.assertEqual(values["Version"], [cmake_version()])
        self.assertEqual(values["License"], ["MIT"])
        self.assertIn("License :: OSI Approved :: MIT License", values["Classifier"])
        self.assertIn("Programming Language :: Python :: 3.13", values["Classifier"])
        self.assertTrue(values["Summary"][0])
        self.assertGreaterEqual(len(values["Project-URL"]), 2)
        self.assertIn("# permafrost for Python", description)
        with tarfile.open(self.sdist) as tar:
            pkg_info = tar.extractfile("permafrost-%s/PKG-INFO" % cmake_version()).read().decode()
        self.assertEqual(pkg_info, meta)
        self.assertIn("permafrost/__init__.py,sha256=", record)

    def test_an_editable_install_shows_edits_without_reinstalling(self):
        code = "import permafrost; print(permafrost.__version__, getattr(permafrost, 'EDITED', 0))"
        self.assertEqual(self.in_venv(self.editable_venv, code).split(), [cmake_version(), "0"])
        source = os.path.join(self.tree, "python", "permafrost", "__init__.py")
        with open(source, "a") as f:
            f.write("\nEDITED = 1\n")
        self.assertEqual(self.in_venv(self.editable_venv, code).split(), [cmake_version(), "1"])
        # The module itself came with the install: freeze works and __file__ is the checkout's.
        out = self.in_venv(self.editable_venv, "import permafrost; print(permafrost.__file__, "
                           "permafrost.freeze([1, 2])[1])")
        self.assertEqual(out.split(), [source, "2"])

    def test_a_missing_build_tool_is_named_in_one_line(self):
        bin_dir = os.path.join(self.tmp, "bin-python-only")
        os.makedirs(bin_dir, exist_ok=True)
        if not os.path.exists(os.path.join(bin_dir, "python3")):
            os.symlink(DEBIAN_PYTHON, os.path.join(bin_dir, "python3"))
        proc = subprocess.run(
            [DEBIAN_PYTHON, "-m", "pip", "wheel", "--no-index", "--no-build-isolation",
             "--no-deps", "-w", os.path.join(self.tmp, "w-fail"),
             os.path.join(self.tree, "python")],
            env=dict({k: v for k, v in self.env.items() if k not in ("CC", "CXX", "CMAKE_GENERATOR")},
                     PATH=bin_dir, PERMAFROST_BUILD_DIR=os.path.join(self.tmp, "b2")),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertNotEqual(proc.returncode, 0)
        lines = [line for line in proc.stdout.splitlines() if "permafrost: cannot build" in line]
        self.assertEqual(len(lines), 1, proc.stdout)
        self.assertIn("missing cmake, make, a C and C++ compiler;", lines[0])
        self.assertIn("apt-get install cmake make g++", lines[0])
        self.assertNotIn("Traceback", proc.stdout)

    def test_each_missing_tool_names_its_debian_package(self):
        backend = load_backend(BACKEND)
        tools = os.path.join(self.tmp, "bin-cmake-make")
        os.makedirs(tools, exist_ok=True)
        for tool in ("cmake", "make"):
            if not os.path.exists(os.path.join(tools, tool)):
                os.symlink(shutil.which(tool), os.path.join(tools, tool))
        self.assertEqual(backend.missing_build_tools({"PATH": tools}),  # no CC, CXX
                         [("a C and C++ compiler", "g++")])
        empty = os.path.join(self.tmp, "no-headers")
        os.makedirs(empty, exist_ok=True)
        missing = backend.missing_build_tools(dict(os.environ), include_dir=empty)
        self.assertEqual(missing, [("Python.h (%s)" % empty, "python3-dev")])
        self.assertEqual(backend.missing_build_tools(dict(os.environ)), [])


if __name__ == "__main__":
    unittest.main()
