#!/usr/bin/env bash
# uWSGI with the malloc library preloaded and an address-space limit (--limit-as), which uWSGI
# sets on itself after the interpreter has started and allocated: a master and 2 workers of 2
# threads each serve a WSGI app over a dict. Checks that every request is answered and that no
# worker died (with a 1 GiB first heap arena every worker died at --limit-as 1024: the process
# already held more address space than the limit, so each later mapping was refused).
#
# The workers are grandchildren of the process uWSGI starts as (--daemonize forks, the master
# forks the workers): until 2026-12-05 a worker under load died of SIGSEGV in about 1 run in 6,
# having unmapped free parts of its own heap that it took for its grandparent's (docs/errors.md).
#
# usage: preload_uwsgi.sh LIBRARY [LIMIT_MIB]   (exit 77, "SKIPPED: ...", without uWSGI's
#                                                Python 3 plugin)
set -euo pipefail
lib=$1
limit=${2:-1024}
skip() { echo "SKIPPED: $*"; exit 77; }

command -v uwsgi > /dev/null || skip "no uwsgi"
plugin_dir=/usr/lib/uwsgi/plugins
[[ -e $plugin_dir/python3_plugin.so ]] || skip "no uWSGI python3 plugin (uwsgi-plugin-python3)"

work=$(mktemp -d /tmp/permafrost-uwsgi.XXXXXX)
cleanup() {
  if [[ -f $work/pid ]]; then kill -INT "$(cat "$work/pid")" 2> /dev/null || true; fi
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/app.py" << 'EOF'
TABLE = {"k%d" % i: {"name": "n%d" % i, "v": list(range(i % 7))} for i in range(100000)}
def application(env, start_response):
    row = TABLE.get(env.get("PATH_INFO", "/")[1:])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s\n" % (row["name"] if row else "-")).encode()]
EOF

LD_PRELOAD=$lib uwsgi --plugin-dir "$plugin_dir" --plugin python3 \
  --http-socket "$work/http.sock" --wsgi-file "$work/app.py" --master --processes 2 --threads 2 \
  --limit-as "$limit" --pidfile "$work/pid" --daemonize "$work/log" --die-on-term

# 40 requests over the socket, 4 at a time, each retried while the workers start (30 s in all).
status=0
python3 - "$work/http.sock" << 'EOF' || status=$?
import socket, sys, time
from concurrent.futures import ThreadPoolExecutor

deadline = time.monotonic() + 30

def get(i):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(sys.argv[1])
            s.sendall(b"GET /k%d HTTP/1.0\r\n\r\n" % i)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            s.close()
            if data.startswith(b"HTTP/1.") and data.endswith(b"\nn%d\n" % i):
                return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)

with ThreadPoolExecutor(4) as pool:
    answered = sum(pool.map(get, range(40)))
print("answered %d of 40" % answered)
sys.exit(0 if answered == 40 else 1)
EOF

deaths=$(grep -c "died\|Fatal glibc error\|unable to allocate" "$work/log" || true)
if [[ $status != 0 || $deaths != 0 ]]; then
  echo "uWSGI log reports $deaths deaths or failed allocations:"
  grep "died\|Fatal\|unable" "$work/log" | head -10
  exit 1
fi
echo "ok: uWSGI --limit-as $limit with the malloc library served every request, no worker died"
