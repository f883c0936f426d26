#!/usr/bin/env bash
# Profiles a fresh Lockstep hub under fhircast-load (10 subscribers, one topic).
#
#   bench/tools/profile.sh perf      OUT [persist|no-persist] [PATIENTS] [RATE]
#   bench/tools/profile.sh callgrind OUT [persist|no-persist] [PATIENTS] [RATE] [WARMUP] [DURATION]
#
# perf: system-wide `perf record -e cpu-clock -g` (software timer; this VM has no hardware
# counters) for 8 s in the middle of a 12 s run at RATE (1000) events/s → OUT.perf.data; the hub
# and generator threads are both called tokio-rt-worker, so tell them apart by TID
# (`perf report --sort pid`). callgrind: the hub under valgrind, instrumentation switched on
# only for the measured phase (callgrind_control) → OUT.cg.out; RATE defaults to 20 (valgrind
# runs the hub ~50x slower). Load-generator output → OUT.load.txt, hub logs → OUT.hub.err.
# HUB_BIN: another hub binary (a build kept for a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=${1:?perf or callgrind} out=${2:?output prefix} mode=${3:-persist} patients=${4:-64}
flags=()
[[ $mode == no-persist ]] && flags=(--no-persist)
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hub_cmd=("${HUB_BIN:-target/release/lockstep-hub}" --listen "127.0.0.1:$port" --data-dir "$data" --no-auth "${flags[@]}")
case $tool in
perf)
    rate=${5:-1000}
    "${hub_cmd[@]}" >"$out.hub.out" 2>"$out.hub.err" &
    ;;
callgrind)
    rate=${5:-20} warmup=${6:-4} duration=${7:-15}
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.cg.out" \
        "${hub_cmd[@]}" >"$out.hub.out" 2>"$out.hub.err" &
    ;;
*) echo "profile.sh: perf or callgrind" >&2; exit 2 ;;
esac
hub=$!
for _ in $(seq 300); do grep -q "ready at" "$out.hub.out" 2>/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port/fhircast/STU3
echo "profile.sh: $tool, $mode, P=$patients, $rate ev/s; load $(cut -d' ' -f1 /proc/loadavg)" >&2
if [[ $tool == perf ]]; then
    target/release/fhircast-load --hub "$url" --hub-pid "$hub" --subscribers 10 --rate "$rate" \
        --patients "$patients" --duration 12 --warmup 2 >"$out.load.txt" 2>&1 &
    load=$!
    sleep 4
    perf record -F 1999 -e cpu-clock -a -g -o "$out.perf.data" -- sleep 8 2>"$out.perf.err"
    wait "$load"
else
    target/release/fhircast-load --hub "$url" --subscribers 10 --rate "$rate" --patients "$patients" \
        --duration "$duration" --warmup "$warmup" --drain-timeout 20 >"$out.load.txt" 2>&1 &
    load=$!
    sleep "$warmup"
    callgrind_control -i on "$hub" >/dev/null
    sleep "$duration"
    callgrind_control -i off "$hub" >/dev/null
    wait "$load"
fi
kill "$hub"
wait "$hub" || true
rm -rf "$data"
grep -E "^(publish|delivery|hub|generator)|latency" "$out.load.txt" >&2
