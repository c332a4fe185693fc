#!/usr/bin/env bash
# PostgreSQL with the malloc library preloaded into every process of the server (postmaster,
# backends, parallel workers, autovacuum): a real pre-fork server that knows nothing of permafrost.
# Checks that the library is mapped in the backends, that sorts, hash joins, large strings and a
# parallel query give the right answers, that a query past the address-space limit fails with
# PostgreSQL's own "out of memory" error while the server stays up, and that no server process
# died of a signal.
#
# usage: preload_postgres.sh LIBRARY   (exit 77, "SKIPPED: ...", when PostgreSQL is not installed
#                                       or, as root, there is no postgres user to run it as)
set -euo pipefail
lib=$1
skip() { echo "SKIPPED: $*"; exit 77; }

bindir=""
if command -v pg_config > /dev/null; then bindir=$(pg_config --bindir); fi
if [[ ! -x $bindir/initdb ]]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1 || true)
fi
[[ -n $bindir && -x $bindir/initdb && -x $bindir/pg_ctl ]] || skip "no PostgreSQL (initdb, pg_ctl)"
psql=$bindir/psql
[[ -x $psql ]] || psql=$(command -v psql) || skip "no psql"

as_user=()
if [[ $(id -u) == 0 ]]; then  # PostgreSQL refuses to run as root
  id postgres > /dev/null 2>&1 || skip "running as root and there is no postgres user"
  as_user=(runuser -u postgres --)
fi

work=$(mktemp -d /tmp/permafrost-pg.XXXXXX)
data=$work/data
cleanup() {
  "${as_user[@]}" "$bindir/pg_ctl" -D "$data" stop -m immediate > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# A copy of the library the postgres user can read, whoever owns the build directory.
cp "$lib" "$work/libpermafrost-malloc.so"
chmod 755 "$work" "$work/libpermafrost-malloc.so"
[[ ${#as_user[@]} == 0 ]] || chown postgres "$work"

"${as_user[@]}" "$bindir/initdb" -D "$data" -A trust --no-sync > "$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log"; exit 1; }
# A unix socket in the work directory only (no TCP port to collide with), and an address-space
# limit that the out-of-memory query below runs into.
"${as_user[@]}" bash -c 'ulimit -v 1500000 && exec env LD_PRELOAD="$1" "$2" -D "$3" -w -l "$4" \
  -o "-c listen_addresses= -k $5 -c shared_buffers=32MB -c fsync=off" start' _ \
  "$work/libpermafrost-malloc.so" "$bindir/pg_ctl" "$data" "$work/server.log" "$work" > /dev/null

pid=$(head -n 1 "$data/postmaster.pid")
grep -q libpermafrost-malloc "/proc/$pid/maps" || { echo "the library is not mapped in the postmaster"; exit 1; }

run_sql() { "${as_user[@]}" "$psql" -h "$work" -X -A -t -v ON_ERROR_STOP=0 -c "$1" postgres 2>&1 || true; }
expect() {  # expect NAME SQL OUTPUT
  local got
  got=$(run_sql "$2")
  if [[ $got != "$3" ]]; then
    echo "FAILED: $1: expected [$3], got [$got]"
    cat "$work/server.log"
    exit 1
  fi
  echo "ok: $1"
}

expect "a backend maps the library" \
  "select count(*) > 0 from pg_read_file('/proc/' || pg_backend_pid() || '/maps') m
   where m like '%libpermafrost-malloc%'" "t"
expect "sort of 300,000 strs" \
  "set work_mem='64MB'; select count(*), min(m) from (select md5(g::text) m
   from generate_series(1,300000) g order by m) s" $'SET\n300000|00003e3b9e5336685200ae85d21b4f5e'
expect "hash join" \
  "select count(*) from generate_series(1,300000) a join generate_series(1,300000) b on a = b" \
  "300000"
expect "a 50 MB string" \
  "select length(string_agg(md5(g::text), ',')) from generate_series(1,1500000) g" "49499999"
expect "parallel query (dynamic shared memory, parallel workers)" \
  "set max_parallel_workers_per_gather=2; set parallel_setup_cost=0; set parallel_tuple_cost=0;
   set min_parallel_table_scan_size=0; create table t as select g from generate_series(1,200000) g;
   analyze t; select sum(g) from t; drop table t" $'SET\nSET\nSET\nSET\nSELECT 200000\nANALYZE\n20000100000\nDROP TABLE'
got=$(run_sql "set work_mem='4GB'; select array_length(array_agg(g), 1) from generate_series(1,200000000) g")
if [[ $got != *"ERROR:  out of memory"* ]]; then
  echo "FAILED: past the address-space limit: expected PostgreSQL's out-of-memory error, got [$got]"
  exit 1
fi
echo "ok: past the address-space limit, an out-of-memory error"
expect "the server still answers" "select 40 + 2" "42"
if grep -E "terminated by signal|PANIC|server process .* was terminated" "$work/server.log"; then
  echo "FAILED: a server process died"
  exit 1
fi
echo "ok: no server process died"
