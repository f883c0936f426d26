#!/usr/bin/env bash
# Side by side, same run (issue 18): hub variants in alternating rounds, a fresh hub (empty data
# dir, free port) per run, the hub pinned to core 0 and the generator to core 1, then the
# median of each variant's rounds. Default: the latency goal, 10 subscribers on one topic at
# 1000 events/s, persisted with 2 and 64 open contexts and `--no-persist`.
#
#   bench/side-by-side.sh                         # target/release binaries, 3 rounds of 10 s
#   ROUNDS=3 DURATION=10 bench/side-by-side.sh
#   VARIANTS='before-persist|/tmp/hub-before|2| after-persist|target/release/lockstep-hub|2|' \
#       bench/side-by-side.sh                     # two builds against each other
#
# VARIANTS: space-separated `label|hub binary|patients|extra hub flags (comma-separated)`.
# LOAD: extra fhircast-load options (default: the latency goal). Needs jq, taskset (util-linux).
# Results: a markdown table on stdout, raw JSON lines in $OUT (bench/results/side-by-side.json).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
HUB=target/release/lockstep-hub
VARIANTS=${VARIANTS:-"persist-P2|$HUB|2| persist-P64|$HUB|64| no-persist|$HUB|64|--no-persist"}
LOAD=${LOAD:-"--subscribers 10 --rate 1000"}
LOAD_BIN=${LOAD_BIN:-target/release/fhircast-load}
OUT=${OUT:-bench/results/side-by-side.json}

command -v jq >/dev/null || { echo "side-by-side.sh: jq is required" >&2; exit 1; }
# `taskset -c N` when the machine has two cores and taskset (it execs: the hub keeps its pid).
PIN0=() PIN1=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
WORK=$(mktemp -d)
HUB_PID=""
cleanup() {
    [[ -n $HUB_PID ]] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

: >"$OUT"
for ((round = 1; round <= ROUNDS; round++)); do
    for v in $VARIANTS; do
        IFS='|' read -r label bin patients flags <<<"$v"
        data=$(mktemp -d -p "$WORK")
        port=$(free_port)
        # shellcheck disable=SC2086
        "${PIN0[@]}" "$bin" --listen "127.0.0.1:$port" --data-dir "$data" --no-auth ${flags//,/ } \
            >"$data.out" 2>"$data.err" &
        HUB_PID=$!
        for _ in $(seq 300); do
            grep -q "ready at" "$data.out" 2>/dev/null && break
            sleep 0.1
        done
        url=$(grep -o 'http://[^ ]*' "$data.out" | head -1)
        [[ -n $url ]] || { echo "side-by-side.sh: $label did not start" >&2; cat "$data.err" >&2; exit 1; }
        echo "side-by-side.sh: round $round, $label ($url)" >&2
        # shellcheck disable=SC2086
        "${PIN1[@]}" "$LOAD_BIN" --hub "$url" --hub-pid "$HUB_PID" --threads 2 --json --label "$label" \
            --patients "$patients" --duration "$DURATION" --warmup "$WARMUP" $LOAD 2>/dev/null |
            jq -c --arg load1 "$(cut -d' ' -f1 /proc/loadavg)" --arg v "$label" --argjson r "$round" '. + {variant: $v, round: $r, load1_after: $load1}' >>"$OUT"
        kill "$HUB_PID"
        wait "$HUB_PID" 2>/dev/null || true
        HUB_PID=""
        rm -rf "$data" "$data.out" "$data.err"
    done
done

echo "| variant | rounds | delivery p50 µs | delivery p99 µs (each round) | publish p50 / p99 µs | hub CPU % | lost | errors |"
echo "|---|---|---|---|---|---|---|---|"
jq -rs '
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
              else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by(.variant)[] |
  "| \(.[0].variant) | \(length) | \(map(.delivery.latency.p50_us) | median) | \(map(.delivery.latency.p99_us) | median) (\(map(.delivery.latency.p99_us) | map(tostring) | join(", "))) | \(map(.publish.latency.p50_us) | median) / \(map(.publish.latency.p99_us) | median) | \(map(.hub_process.cpu_avg_pct) | median) | \(map(.delivery.lost) | add) | \(map(.errors.total) | add) |"
' "$OUT"
