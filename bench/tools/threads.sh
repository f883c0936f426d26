#!/usr/bin/env bash
# Where a hub's CPU goes, per thread: user and system time (10 ms ticks, from
# /proc/PID/task/*/stat) of a fresh hub pinned to core 0, over one run of
# fhircast-load on core 1 (10 subscribers @ 1000 ev/s, 2 patients, 10 s + 2 s warm-up).
#
#   bench/tools/threads.sh [HUB_BIN] [extra hub flags, e.g. --no-persist]
#
# LOAD_BIN: the load generator (target/release/fhircast-load).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/lockstep-hub}
shift || true
load_bin=${LOAD_BIN:-target/release/fhircast-load}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "$bin" --listen "127.0.0.1:$port" --data-dir "$data/db" --no-auth "$@" >"$data/out" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "ready at" "$data/out" 2>/dev/null && break; sleep 0.1; done

# Thread name, utime, stime (fields 14 and 15 of stat; the name may hold spaces, so it is
# read from comm and the fields after the closing parenthesis are counted from 3).
snapshot() {
    local task line name
    local -a fields
    for task in "/proc/$pid/task/"*; do
        read -r line <"$task/stat"
        name=$(tr ' ' '_' <"$task/comm")
        read -r -a fields <<<"${line##*) }"
        echo "$name ${fields[11]} ${fields[12]}"
    done | awk '{u[$1] += $2; s[$1] += $3} END {for (n in u) print n, u[n], s[n]}' | sort
}
snapshot >"$data/before"
taskset -c 1 "$load_bin" --hub "http://127.0.0.1:$port/fhircast/STU3" --subscribers 10 --rate 1000 \
    --patients 2 --duration 10 --warmup 2 >/dev/null 2>&1
snapshot >"$data/after"
join -a1 -a2 -e 0 -o 0,1.2,1.3,2.2,2.3 "$data/before" "$data/after" |
    awk '{u = $4 - $2; s = $5 - $3; tu += u; ts += s; printf "%-22s user %5d  sys %5d\n", $1, u, s}
         END {printf "%-22s user %5d  sys %5d   (ticks of 10 ms)\n", "TOTAL", tu, ts}'
