#!/usr/bin/env bash
# A Python program under an address-space limit (`ulimit -v`), with a malloc library preloaded:
# 12 threads build lists, bytearrays and dicts at once, then the process forks and its child does
# the same. Prints how many runs failed and the median peak address space (VmPeak) of parent and
# child, so that the malloc library, plain mimalloc and glibc can be compared under one limit.
#
# Run by hand, not by ctest: whether a run fails depends on how many of the threads are alive at
# once, so on the machine's load (docs/errors.md).
#
# usage: python_threads_under_limit.sh LIBRARY|none LIMIT_MIB [RUNS] [PYTHON]
#   e.g. python_threads_under_limit.sh build/src/libpermafrost-malloc.so 800 20
set -euo pipefail
lib=$1
limit_mib=$2
runs=${3:-10}
python=${4:-/usr/bin/python3}

work=$(mktemp -d /tmp/permafrost-threads.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/threads.py" << 'PY'
import os, sys, threading

def vm_peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) // 1024

def work(out, i):
    blocks = [bytearray(1000 + j % 5000) for j in range(2000)]
    table = {str(j): [j] * 10 for j in range(5000)}
    out[i] = len(blocks) + len(table)

def run():
    out = [0] * 12
    threads = [threading.Thread(target=work, args=(out, i)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [7000] * 12, out

run()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    run()
    os.write(w, b"%d" % vm_peak_mib())
    os._exit(0)
os.close(w)
child_peak = os.read(r, 64).decode()
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(1)
print(vm_peak_mib(), child_peak)
PY

preload=()
[[ $lib != none ]] && preload=(env "LD_PRELOAD=$lib")
failed=0
peaks=()
for ((i = 0; i < runs; ++i)); do
  if out=$(ulimit -v $((limit_mib * 1024)) && "${preload[@]}" "$python" "$work/threads.py" 2> "$work/err"); then
    peaks+=("$out")
  else
    failed=$((failed + 1))
    last_error=$(tail -1 "$work/err")
  fi
done
median() { sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "-" }'; }
parent=$(printf '%s\n' "${peaks[@]}" | awk 'NF { print $1 }' | median)
child=$(printf '%s\n' "${peaks[@]}" | awk 'NF { print $2 }' | median)
echo "$(basename "$lib") under ${limit_mib} MiB: ${failed} of ${runs} runs failed; VmPeak median: parent ${parent} MiB, child ${child} MiB"
[[ $failed -eq 0 ]] || { echo "  last failure: ${last_error:-}"; exit 1; }
