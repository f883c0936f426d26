#!/usr/bin/env bash
# Lockstep benchmark matrix: builds the hub and fhircast-load in release mode, runs every
# scenario against a freshly started hub, and writes a markdown report to stdout and to
# bench/results/latest.md (raw JSON summaries to bench/results/latest.json).
#
# Knobs (environment): DURATION (measured seconds per scenario, default 10), WARMUP (2),
# MATRIX_RATE (events/s for the fan-out matrix, 100), READY_RUNS (5), THREADS (generator
# worker threads, 2), SKIP_BUILD=1 (use the existing binaries). Needs bash 5, jq, Linux /proc.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
MATRIX_RATE=${MATRIX_RATE:-100}
READY_RUNS=${READY_RUNS:-5}
THREADS=${THREADS:-2}
HUB_BIN=target/release/lockstep-hub
LOAD_BIN=target/release/fhircast-load
RESULTS=bench/results

command -v jq >/dev/null || { echo "run.sh: jq is required" >&2; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release -p lockstep-hub -p lockstep-bench >&2
fi
mkdir -p "$RESULTS"
WORK=$(mktemp -d)
HUB_PID=""
HUB_CAT=""
cleanup() {
    stop_hub
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "run.sh: $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# Starts a fresh hub (empty data dir, free port); sets HUB_PID, HUB_URL, READY_MS.
start_hub() {
    local n=$RANDOM$RANDOM
    local fifo=$WORK/stdout.$n data=$WORK/data.$n port line t0 t1 fd
    port=$(free_port)
    mkdir -p "$data"
    mkfifo "$fifo"
    t0=$(now_us)
    "$HUB_BIN" --listen "127.0.0.1:$port" --data-dir "$data" --no-auth >"$fifo" 2>>"$WORK/hub.stderr" &
    HUB_PID=$!
    exec {fd}<"$fifo"
    HUB_URL=""
    while IFS= read -r -t 30 -u "$fd" line; do
        if [[ $line == *"Lockstep hub ready at "* ]]; then
            t1=$(now_us)
            HUB_URL=${line##*ready at }
            break
        fi
    done
    # Keep draining the hub's stdout so it never blocks on a full pipe.
    cat <&"$fd" >>"$WORK/hub.stdout" &
    HUB_CAT=$!
    exec {fd}<&-
    rm -f "$fifo"
    if [[ -z $HUB_URL ]]; then
        log "hub did not print its ready line within 30 s; stderr:"
        tail -20 "$WORK/hub.stderr" >&2
        exit 1
    fi
    READY_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
}

stop_hub() {
    if [[ -n $HUB_PID ]]; then
        kill "$HUB_PID" 2>/dev/null || true
        wait "$HUB_PID" 2>/dev/null || true
        HUB_PID=""
    fi
    if [[ -n $HUB_CAT ]]; then
        wait "$HUB_CAT" 2>/dev/null || true
        HUB_CAT=""
    fi
}

ROWS=()
IDLE_ROWS=()
JSONS=()

# scenario LABEL [fhircast-load options...]: one run against a fresh hub, one table row.
scenario() {
    local label=$1
    shift
    log "scenario: $label"
    start_hub
    local out=$WORK/out.json
    if "$LOAD_BIN" --hub "$HUB_URL" --hub-pid "$HUB_PID" --threads "$THREADS" --json \
        --label "$label" "$@" >"$out" 2>>"$WORK/load.stderr"; then
        JSONS+=("$(cat "$out")")
        ROWS+=("$(jq -r '
            def f: if . == null then "–" else tostring end;
            def mb: if . == null then "–" else ((. / 102.4 | round) / 10 | tostring) end;
            "| \(.label) | \(.config.subscribers)\(if .config.stalled_subscribers > 0 then " +\(.config.stalled_subscribers) stalled" else "" end) | \(.config.topics) | \(if .config.rate > 0 then (.config.rate | tostring) else "max (\(.config.concurrency) in flight)" end) | \(.config.event_bytes) | \(.publish.per_s) | \(.delivery.per_s) | \(.publish.latency.p50_us) / \(.publish.latency.p99_us) | \(.delivery.latency.p50_us) | \(.delivery.latency.p99_us) | \(.delivery.latency.p99_9_us) | \(.delivery.latency.max_us) | \(.delivery.lost) | \(.errors.total) | \(.hub_process.rss_max_kb | mb) | \(.hub_process.cpu_avg_pct | f) | \(.generator_process.cpu_avg_pct | f) |"
        ' "$out")")
    else
        ROWS+=("| $label | failed: $(tail -1 "$WORK/load.stderr" | tr '|' '/') | | | | | | | | | | | | | | | |")
    fi
    stop_hub
}

# idle LABEL SUBSCRIBERS: hold SUBSCRIBERS idle connections for 10 s and sample the hub.
idle() {
    local label=$1 subs=$2
    log "idle: $label"
    start_hub
    local out=$WORK/out.json
    if "$LOAD_BIN" --hub "$HUB_URL" --hub-pid "$HUB_PID" --threads "$THREADS" --json \
        --label "$label" --subscribers "$subs" --events 0 --warmup 1 --duration 10 \
        >"$out" 2>>"$WORK/load.stderr"; then
        JSONS+=("$(cat "$out")")
        IDLE_ROWS+=("$(jq -r '
            def mb: ((. / 102.4 | round) / 10 | tostring);
            "| \(.label) | \(.setup.subscribed) | \(.hub_process.rss_start_kb | mb) | \(.hub_process.rss_min_kb | mb) / \(.hub_process.rss_avg_kb | mb) / \(.hub_process.rss_max_kb | mb) | \(.hub_process.cpu_avg_pct) | \(.setup.setup_ms) |"
        ' "$out")")
    else
        IDLE_ROWS+=("| $label | failed: $(tail -1 "$WORK/load.stderr" | tr '|' '/') | | | | |")
    fi
    stop_hub
}

D=(--duration "$DURATION" --warmup "$WARMUP")

# Start-to-ready: spawn → "Lockstep hub ready at" line, fresh data dir each time.
READY=()
for _ in $(seq "$READY_RUNS"); do
    start_hub
    READY+=("$READY_MS")
    stop_hub
done
READY_SORTED=$(printf '%s\n' "${READY[@]}" | sort -n)
READY_MIN=$(head -1 <<<"$READY_SORTED")
READY_MAX=$(tail -1 <<<"$READY_SORTED")
READY_MED=$(awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$READY_SORTED")
log "start-to-ready ms: ${READY[*]}"

# Fan-out matrix: one topic, MATRIX_RATE events/s.
for n in 1 10 100 1000; do
    scenario "fan-out $n" --subscribers "$n" --topics 1 --rate "$MATRIX_RATE" "${D[@]}"
done
scenario "100 topics × 10" --subscribers 1000 --topics 100 --rate 1000 "${D[@]}"
scenario "payload 1 KB (content sharing)" --subscribers 10 --content-sharing --payload-bytes 1024 --rate "$MATRIX_RATE" "${D[@]}"
scenario "payload 100 KB (content sharing)" --subscribers 10 --content-sharing --payload-bytes 102400 --rate "$MATRIX_RATE" "${D[@]}"
scenario "latency goal: 10 subs @ 1000/s" --subscribers 10 --rate 1000 "${D[@]}"
scenario "throughput: 100 subs, max" --subscribers 100 --rate 0 --concurrency 16 "${D[@]}"
# Stalled readers: 10 KB events at 500/s fill a stalled socket's buffers within seconds; run
# past the hub's ACK timeout so it has to deal with them.
STALL=(--subscribers 10 --rate 500 --payload-bytes 10240 --duration 15 --warmup "$WARMUP")
scenario "stalled: baseline" "${STALL[@]}"
scenario "stalled: + 2 stalled readers" "${STALL[@]}" --stalled-subscribers 2
idle "idle hub" 0
idle "1000 idle subscribers" 1000

STALLED_NOTE=$(jq -rs '[.[] | select(.config.stalled_subscribers > 0)][0] // empty |
    "With stalled readers: \(.setup.stalled_subscribed) connected, the hub had closed \(.setup.stalled_closed_by_hub) of them by the end, \(.setup.stalled_unread_frames) notifications were left unread on their sockets."' \
    <<<"$(printf '%s\n' "${JSONS[@]}")")

{
    echo "# Lockstep benchmark results"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "- hub: $("$HUB_BIN" --version 2>/dev/null || echo lockstep-hub), generator: $("$LOAD_BIN" --version)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr); hub and generator share the cores"
    echo "- each scenario: fresh hub (\`--no-auth\`, empty data dir), warm-up ${WARMUP} s, measured ${DURATION} s unless noted, generator on ${THREADS} threads"
    echo
    echo "## Start-to-ready"
    echo
    echo "Spawn → \`Lockstep hub ready at\` on stdout, $READY_RUNS runs: min $READY_MIN ms, median $READY_MED ms, max $READY_MAX ms (all: ${READY[*]})."
    echo
    echo "## Load"
    echo
    echo "Latencies in µs. Publish = POST → 2xx; delivery = publish send instant → a subscriber's receipt. Lost = expected − received after a drain of at most 5 s. RSS max / CPU avg of the hub over the measured phase (CPU in % of one core)."
    echo
    echo "| scenario | subs | topics | rate ev/s | event B | published/s | deliveries/s | publish p50 / p99 | delivery p50 | p99 | p99.9 | max | lost | errors | hub RSS MB | hub CPU % | generator CPU % |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    [[ -n $STALLED_NOTE ]] && echo "$STALLED_NOTE" && echo
    echo "## Idle"
    echo
    echo "Hub sampled over 10 s with no events."
    echo
    echo "| measurement | subscribers | RSS at start MB | RSS min / avg / max MB | CPU avg % | subscribe setup ms |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${IDLE_ROWS[@]}"
} | tee "$RESULTS/latest.md"

printf '%s\n' "${JSONS[@]}" | jq -s . >"$RESULTS/latest.json"
log "wrote $RESULTS/latest.md and $RESULTS/latest.json"
