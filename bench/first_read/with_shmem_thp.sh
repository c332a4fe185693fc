#!/usr/bin/env bash
# Runs a command with shared-memory transparent huge pages allowed where asked for
# (/sys/kernel/mm/transparent_hugepage/shmem_enabled = advise), as an administrator would set it,
# and puts the previous setting back on every exit (success, failure, Ctrl-C). Needs root.
# Usage: bench/first_read/with_shmem_thp.sh COMMAND [ARGS...]
#   e.g. with_shmem_thp.sh build/bench/first_read/bench_first_read --only memfd,memfd-pop
set -euo pipefail
setting=/sys/kernel/mm/transparent_hugepage/shmem_enabled
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
[[ -w $setting ]] || { echo "$0: $setting is not writable (root needed)" >&2; exit 2; }
previous=$(sed -n 's/.*\[\(.*\)\].*/\1/p' "$setting")
trap 'echo "$previous" > "$setting"; echo "shmem_enabled restored: $(cat "$setting")" >&2' EXIT
trap 'exit 130' INT TERM
echo advise > "$setting"
echo "shmem_enabled: $(cat "$setting")" >&2
"$@"
