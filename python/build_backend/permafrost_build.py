"""A PEP 517 / PEP 660 build backend for permafrost's Python package, standard library only.

Contract: the four hooks pip calls, nothing else.
- build_wheel: configures the permafrost CMake project (this directory's grandparent) for the
  interpreter running the build, with only what the module needs (permafrost::arena; no heap,
  malloc library or libmimalloc), builds the one extension target stripped, and zips the package
  directory CMake laid out (the module, the pure-Python files, _version.py) into a wheel.
- build_sdist: a .tar.gz holding exactly what build_wheel needs (the CMake files, include/, the
  src/ folders of permafrost::arena, python/ without its tests) with the project root as its root.
- build_editable: a wheel whose .pth file maps `permafrost` to python/permafrost/ in this checkout
  (edits to the .py files show at the next import) plus the module built into the wheel itself
  (rebuild, i.e. reinstall, after changing C++).
- A missing build tool (cmake, make, a C/C++20 compiler, Python.h, xxhash.h) stops the build
  with one line naming what is missing and the Debian packages that provide it.

The version has one source: project(permafrost VERSION x.y.z) in the top CMakeLists.txt; CMake
writes it into permafrost/_version.py, and the metadata here reads the same line. The other
metadata comes from python/pyproject.toml's [project] table.

Environment: PERMAFROST_BUILD_DIR (default: a temporary directory) keeps the CMake build between
runs; PERMAFROST_BUILD_JOBS (default 2) is the build's parallelism.
"""
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tomllib
import zipfile

NAME = "permafrost"
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)  # python/
PROJECT_ROOT = os.path.dirname(PACKAGE_ROOT)  # the CMake project
# Archive timestamps: SOURCE_DATE_EPOCH when set (reproducible builds), else 1980-01-01, the
# earliest a zip can hold; the contents decide an archive's bytes, not the time it was built.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))


# ----- metadata ---------------------------------------------------------------------------------

def version():
    """The project's version, from project(permafrost VERSION ...) in the top CMakeLists.txt."""
    with open(os.path.join(PROJECT_ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*permafrost\s+VERSION\s+([0-9][0-9A-Za-z.]*)", f.read())
    if not m:
        raise SystemExit("permafrost: no project(permafrost VERSION ...) line in %s"
                         % os.path.join(PROJECT_ROOT, "CMakeLists.txt"))
    return m.group(1)


def _project():
    with open(os.path.join(PACKAGE_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def metadata():
    """The core metadata (METADATA in a wheel, PKG-INFO in an sdist), version 2.1."""
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + version(),
             "Summary: " + p["description"], "Requires-Python: " + p["requires-python"],
             "License: " + p["license"]["text"]]
    for author in p.get("authors", []):
        lines.append("Author: " + author["name"])
    if p.get("keywords"):
        lines.append("Keywords: " + ",".join(p["keywords"]))
    lines += ["Classifier: " + c for c in p.get("classifiers", [])]
    lines += ["Project-URL: %s, %s" % (k, v) for k, v in p.get("urls", {}).items()]
    readme = p["readme"]
    lines.append("Description-Content-Type: " + readme["content-type"])
    with open(os.path.join(PACKAGE_ROOT, readme["file"]), encoding="utf-8") as f:
        description = f.read()
    return "\n".join(lines) + "\n\n" + description


def _dist_info():
    return "%s-%s.dist-info" % (NAME, version())


def _license():
    with open(os.path.join(PROJECT_ROOT, "LICENSE"), "rb") as f:
        return f.read()


def _write_metadata(metadata_directory):
    dist_info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(dist_info, exist_ok=True)
    with open(os.path.join(dist_info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(metadata())
    with open(os.path.join(dist_info, "LICENSE"), "wb") as f:
        f.write(_license())
    return _dist_info()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata(metadata_directory)


# ----- the build --------------------------------------------------------------------------------

DEBIAN_PYTHON = "/usr/bin/python3"


def _compiles(compiler, source, flags):
    with tempfile.TemporaryDirectory(prefix="permafrost-probe-") as tmp:
        path = os.path.join(tmp, "probe.cpp")
        with open(path, "w") as f:
            f.write(source)
        try:
            return subprocess.run([compiler, *flags, "-fsyntax-only", path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        except OSError:
            return False


def missing_build_tools(environ=None, include_dir=None):
    """What the build needs and this machine lacks, as (what, Debian package) pairs, in the
    order a user would install them. environ defaults to os.environ, include_dir to this
    interpreter's (sysconfig)."""
    environ = os.environ if environ is None else environ
    path = environ.get("PATH", os.defpath)
    missing = []
    if not shutil.which("cmake", path=path):
        missing.append(("cmake", "cmake"))
    if not environ.get("CMAKE_GENERATOR") and not shutil.which("make", path=path):
        missing.append(("make", "make"))
    cc = environ.get("CC") or shutil.which("cc", path=path) or shutil.which("gcc", path=path)
    cxx = (environ.get("CXX") or shutil.which("c++", path=path) or shutil.which("g++", path=path)
           or shutil.which("clang++", path=path))
    if not cc or not cxx:
        missing.append(("a C and C++ compiler", "g++"))
    elif not _compiles(cxx, "#include <concepts>\n#if __cplusplus < 202002L\n#error\n#endif\n",
                       ["-std=c++20"]):
        missing.append(("a C++20 compiler (%s is older)" % cxx, "g++"))
    elif not _compiles(cxx, "#include <xxhash.h>\n", ["-std=c++20"]):
        missing.append(("xxhash.h", "libxxhash-dev"))
    include_dir = include_dir or sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include_dir, "Python.h")):
        debian = os.path.realpath(sys.executable) == os.path.realpath(DEBIAN_PYTHON)
        missing.append(("Python.h (%s)" % include_dir,
                        "python3-dev" if debian else "the headers of " + sys.executable))
    return missing


def check_build_tools():
    """Raises SystemExit with one line when a build tool is missing (pip shows it as is)."""
    missing = missing_build_tools()
    if missing:
        raise SystemExit("permafrost: cannot build the extension module: missing %s; on Debian "
                         "or Ubuntu install them with: apt-get install %s" % (
                             ", ".join(what for what, _ in missing),
                             " ".join(dict.fromkeys(pkg for _, pkg in missing))))


def _build_module(build_dir, build_type, strip):
    """Configures and builds the module for this interpreter; returns its package directory."""
    if not os.path.exists(os.path.join(PROJECT_ROOT, "CMakeLists.txt")):
        raise SystemExit("permafrost: %s is not the permafrost source tree (no CMakeLists.txt): "
                         "build from a checkout or an sdist" % PROJECT_ROOT)
    check_build_tools()
    jobs = os.environ.get("PERMAFROST_BUILD_JOBS", "2")
    configure = [
        "cmake", "-S", PROJECT_ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=" + build_type,
        "-DPERMAFROST_BUILD_TESTS=OFF", "-DPERMAFROST_BUILD_BENCH=OFF",
        "-DPERMAFROST_BUILD_EXAMPLES=OFF", "-DPERMAFROST_BUILD_TOOLS=OFF",
        "-DPERMAFROST_BUILD_PYTHON=ON", "-DPERMAFROST_PYTHON_INTERPRETERS=" + sys.executable,
        # The module links permafrost::arena only (docs/design.md, "No second malloc"): the heap
        # is not built, and a configure that still asks for mimalloc fails here.
        "-DPERMAFROST_BUILD_HEAP=OFF", "-DCMAKE_DISABLE_FIND_PACKAGE_mimalloc=ON",
        "-DPERMAFROST_PYTHON_STRIP=" + ("ON" if strip else "OFF")]
    subprocess.check_call(configure, stdout=sys.stderr)
    subprocess.check_call(["cmake", "--build", build_dir, "-j", jobs, "--target",
                           "permafrost_python_py0"], stdout=sys.stderr)
    return os.path.join(build_dir, "python", "py0", NAME)


def _with_build_dir(build):
    """Runs build(build_dir) in PERMAFROST_BUILD_DIR, or in a temporary directory removed after."""
    build_dir = os.environ.get("PERMAFROST_BUILD_DIR")
    if build_dir:
        return build(os.path.abspath(build_dir))
    with tempfile.TemporaryDirectory(prefix="permafrost-build-") as tmp:
        return build(tmp)


def _package_files(directory, prefix):
    """(archive name, bytes, executable) for every file under directory, sorted."""
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            arcname = prefix + os.path.relpath(path, directory).replace(os.sep, "/")
            out.append((arcname, data, os.access(path, os.X_OK)))
    return out


# ----- wheels -----------------------------------------------------------------------------------

def _tag():
    impl = "cp%d%d" % sys.version_info[:2]
    abi = impl + getattr(sys, "abiflags", "")
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "%s-%s-%s" % (impl, abi, plat)


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _write_wheel(wheel_directory, files):
    """Writes NAME-VERSION-TAG.whl holding files (archive name, bytes, executable) plus the
    dist-info (METADATA, WHEEL, LICENSE, RECORD); returns its file name."""
    dist_info = _dist_info()
    files = list(files) + [
        (dist_info + "/METADATA", metadata().encode(), False),
        (dist_info + "/LICENSE", _license(), False),
        (dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: permafrost_build\n"
                                "Root-Is-Purelib: false\nTag: %s\n" % _tag()).encode(), False)]
    record = [_record_line(name, data) for name, data, _ in files] + [dist_info + "/RECORD,,"]
    files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode(), False))
    wheel_name = "%s-%s-%s.whl" % (NAME, version(), _tag())
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, executable in files:
            info = zipfile.ZipInfo(name, date_time=_zip_time())
            info.external_attr = (0o755 if executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return wheel_name


def _zip_time():
    return time.gmtime(max(EPOCH, 315532800))[:6]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """A release wheel: the module built Release and stripped, with the package's files."""
    def build(build_dir):
        package_dir = _build_module(build_dir, "Release", strip=True)
        return _write_wheel(wheel_directory, _package_files(package_dir, NAME + "/"))
    return _with_build_dir(build)


# The editable install's import hook: a module installed into site-packages beside its .pth file.
# It finds `permafrost` in the checkout and gives the package two directories, the checkout's
# python/permafrost (the .py files, read at import) and the installed build output (_core,
# _version.py). It is appended to sys.meta_path, so a `permafrost` earlier on sys.path (e.g. a
# build directory on PYTHONPATH) still wins, as an ordinary installed package would let it.
EDITABLE_FINDER = '''"""permafrost installed in editable mode (pip install -e): the import hook."""
import importlib.abc
import importlib.util
import os
import sys

SOURCE = %r
BUILT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_permafrost_editable")


class PermafrostEditableFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "permafrost":
            return None
        return importlib.util.spec_from_file_location(
            name, os.path.join(SOURCE, "__init__.py"), submodule_search_locations=[SOURCE, BUILT])


def install():
    if not any(type(f).__name__ == "PermafrostEditableFinder" for f in sys.meta_path):
        sys.meta_path.append(PermafrostEditableFinder())
'''


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """An editable wheel: the .py files stay in this checkout; the module (RelWithDebInfo, not
    stripped: this is a development install) and _version.py go into the wheel."""
    source = os.path.join(PACKAGE_ROOT, NAME)

    def build(build_dir):
        package_dir = _build_module(build_dir, "RelWithDebInfo", strip=False)
        built = [(name, data, x) for name, data, x in
                 _package_files(package_dir, "_permafrost_editable/")
                 if not os.path.exists(os.path.join(source, name.split("/", 1)[1]))]
        finder = EDITABLE_FINDER % source
        files = built + [
            ("_permafrost_editable_finder.py", finder.encode(), False),
            ("__editable__.%s-%s.pth" % (NAME, version()),
             b"import _permafrost_editable_finder; _permafrost_editable_finder.install()\n", False)]
        return _write_wheel(wheel_directory, files)
    return _with_build_dir(build)


# ----- the sdist --------------------------------------------------------------------------------

def _arena_source_folders():
    """The src/ folders of permafrost::arena's objects (permafrost_arena_objects in
    src/CMakeLists.txt): the sdist carries these and no other part of src/."""
    with open(os.path.join(PROJECT_ROOT, "src", "CMakeLists.txt")) as f:
        m = re.search(r"permafrost_objects\(\s*permafrost_arena_objects\s+([^)]*)\)", f.read())
    if not m:
        raise SystemExit("permafrost: src/CMakeLists.txt has no permafrost_arena_objects list")
    return sorted({path.split("/")[0] for path in m.group(1).split() if "/" in path})


def sdist_paths():
    """The files an sdist holds, relative to the project root: what building the module needs
    (CMake files, include/, the arena's src/ folders, python/ but its tests), LICENSE and
    README.md."""
    top = ["CMakeLists.txt", "LICENSE", "README.md", "cmake", "include",
           "src/CMakeLists.txt"] + ["src/" + d for d in _arena_source_folders()] + ["python"]
    paths = []
    for entry in top:
        full = os.path.join(PROJECT_ROOT, entry)
        if os.path.isfile(full):
            paths.append(entry)
            continue
        for root, dirs, files in os.walk(full):
            rel_root = os.path.relpath(root, PROJECT_ROOT)
            dirs[:] = sorted(d for d in dirs if d != "__pycache__"
                             and os.path.join(rel_root, d) != os.path.join("python", "tests"))
            paths += [os.path.join(rel_root, f) for f in sorted(files) if not f.endswith(".pyc")]
    return paths


def build_sdist(sdist_directory, config_settings=None):
    """NAME-VERSION.tar.gz: the project root's build inputs, PKG-INFO, and a pyproject.toml at its
    root (python/pyproject.toml with the backend path pointing into python/)."""
    base = "%s-%s" % (NAME, version())
    with open(os.path.join(PACKAGE_ROOT, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    root_pyproject, count = re.subn(r'backend-path = \["build_backend"\]',
                                    'backend-path = ["python/build_backend"]', pyproject)
    if count != 1:
        raise SystemExit("permafrost: python/pyproject.toml has no backend-path = "
                         "[\"build_backend\"] line")
    generated = {"PKG-INFO": metadata().encode(), "pyproject.toml": root_pyproject.encode()}
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        def add(arcname, data, mode):
            info = tarfile.TarInfo(base + "/" + arcname)
            info.size, info.mode, info.mtime = len(data), mode, EPOCH
            tar.addfile(info, io.BytesIO(data))
        for arcname, data in generated.items():
            add(arcname, data, 0o644)
        for rel in sdist_paths():
            full = os.path.join(PROJECT_ROOT, rel)
            with open(full, "rb") as f:
                add(rel.replace(os.sep, "/"), f.read(), 0o755 if os.access(full, os.X_OK) else 0o644)
    return name
