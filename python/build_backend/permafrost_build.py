"""A PEP 517 build backend for permafrost's Python package, standard library only.

It configures the permafrost CMake project (this directory's grandparent) for the interpreter
running the build (-DPERMAFROST_PYTHON_INTERPRETERS=sys.executable), builds the one extension
target, and zips permafrost/ plus the module into a wheel. Needs cmake, a C++20 compiler and the
library's build dependencies (scripts/lib.sh installs them); nothing from an index.

Environment: PERMAFROST_BUILD_DIR (default: a temporary directory) keeps the CMake build between
runs; PERMAFROST_BUILD_JOBS (default 2) is the build's parallelism.
"""
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

NAME = "permafrost"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)  # python/
PROJECT_ROOT = os.path.dirname(PACKAGE_ROOT)  # the CMake project


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _tag():
    impl = "cp%d%d" % sys.version_info[:2]
    abi = impl + getattr(sys, "abiflags", "")
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "%s-%s-%s" % (impl, abi, plat)


def _metadata():
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nRequires-Python: >=3.11\n"
            "Summary: Frozen dicts, lists and sets that forked and spawned workers share\n"
            % (NAME, VERSION))


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w") as f:
        f.write(_metadata())
    return dist_info


def _build_module(build_dir):
    if not os.path.exists(os.path.join(PROJECT_ROOT, "CMakeLists.txt")):
        raise RuntimeError("permafrost_build: %s is not the permafrost source tree; build from a "
                           "checkout (pip >= 21.3 builds in place)" % PROJECT_ROOT)
    jobs = os.environ.get("PERMAFROST_BUILD_JOBS", "2")
    subprocess.check_call(
        ["cmake", "-S", PROJECT_ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
         "-DPERMAFROST_BUILD_TESTS=OFF", "-DPERMAFROST_BUILD_BENCH=OFF",
         "-DPERMAFROST_BUILD_EXAMPLES=OFF", "-DPERMAFROST_BUILD_PYTHON=ON",
         "-DPERMAFROST_PYTHON_INTERPRETERS=" + sys.executable], stdout=sys.stderr)
    subprocess.check_call(["cmake", "--build", build_dir, "-j", jobs, "--target",
                           "permafrost_python_py0"], stdout=sys.stderr)
    return os.path.join(build_dir, "python", "py0", NAME)


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build_dir = os.environ.get("PERMAFROST_BUILD_DIR")
    tmp = None
    if not build_dir:
        tmp = build_dir = tempfile.mkdtemp(prefix="permafrost-wheel-")
    try:
        package_dir = _build_module(build_dir)
        wheel_name = "%s-%s-%s.whl" % (NAME, VERSION, _tag())
        dist_info = "%s-%s.dist-info" % (NAME, VERSION)
        files = []
        for entry in sorted(os.listdir(package_dir)):
            path = os.path.join(package_dir, entry)
            if os.path.isfile(path) and (entry.endswith(".py") or entry.endswith(".so")):
                with open(path, "rb") as f:
                    files.append(("%s/%s" % (NAME, entry), f.read()))
        files.append((dist_info + "/METADATA", _metadata().encode()))
        files.append((dist_info + "/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: permafrost_build\nRoot-Is-Purelib: false\nTag: %s\n"
            % _tag()).encode()))
        record = [_record_line(name, data) for name, data in files]
        record.append(dist_info + "/RECORD,,")
        files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode()))
        with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                             zipfile.ZIP_DEFLATED) as z:
            for name, data in files:
                z.writestr(name, data)
        return wheel_name
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
