#!/usr/bin/env bash
# Lockstep benchmark matrix: builds the hub and fhircast-load in release mode, runs every
# scenario against a freshly started hub, and writes a markdown report to stdout and to
# bench/results/latest.md (raw JSON summaries to bench/results/latest.json).
#
# Two axes run through the matrix: durability (the hub as shipped, which persists to SQLite,
# vs `--no-persist`) and open contexts per topic (the generator's `--patients P`: P=2 vs the
# default P=64, the hub's cap; with persistence on, every publish re-saves the whole stack).
#
# Knobs (environment): DURATION (measured seconds per scenario, default 10), WARMUP (2),
# MATRIX_RATE (events/s for the fan-out and payload matrix, 100), READY_RUNS (5), THREADS
# (generator worker threads, 2), SKIP_BUILD=1 (use the existing binaries), ONLY=REGEX (run only
# the scenarios whose label matches, e.g. ONLY='latency|throughput'), REPEAT (runs per load
# scenario, each against a fresh hub, one row each; 1). Needs bash 5, jq, Linux /proc.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
MATRIX_RATE=${MATRIX_RATE:-100}
READY_RUNS=${READY_RUNS:-5}
THREADS=${THREADS:-2}
ONLY=${ONLY:-}
REPEAT=${REPEAT:-1}
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

# start_hub [HUB FLAGS...]: starts a fresh hub (empty data dir, free port) with the extra flags
# (e.g. --no-persist); sets HUB_PID, HUB_URL, READY_MS.
start_hub() {
    local n=$RANDOM$RANDOM
    local fifo=$WORK/stdout.$n data=$WORK/data.$n port line t0 t1 fd
    port=$(free_port)
    mkdir -p "$data"
    mkfifo "$fifo"
    t0=$(now_us)
    "$HUB_BIN" --listen "127.0.0.1:$port" --data-dir "$data" --no-auth "$@" >"$fifo" 2>>"$WORK/hub.stderr" &
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

wanted() { [[ -z $ONLY ]] || [[ $1 =~ $ONLY ]]; }

# Hub flags for a durability mode: "persist" (the default hub: SQLite journal + context saves)
# or "no-persist".
mode_flags() {
    case $1 in
    persist) ;;
    no-persist) echo --no-persist ;;
    *) log "unknown durability mode $1"; exit 2 ;;
    esac
}

load1() { cut -d' ' -f1 /proc/loadavg; }
# Busy jiffies of the whole machine (user+nice+system+irq+softirq), time the hypervisor took
# away from this VM (steal), of a pid (utime+stime), and of this shell's waited-for children
# (cutime+cstime).
machine_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
steal_jiffies() { awk '/^cpu / { print $9; exit }' /proc/stat; }
pid_jiffies() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
children_jiffies() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

# run_load LABEL MODE [fhircast-load options...]: runs the generator against the current hub,
# writes its JSON summary (with durability, load average and other processes' CPU added) to
# $WORK/out.json; fails like the generator.
run_load() {
    local label=$1 mode=$2
    shift 2
    local out=$WORK/out.json raw=$WORK/raw.json l1 m0 s0 h0 c0 t0 m1 s1 h1 c1 t1 rc=0
    l1=$(load1)
    m0=$(machine_jiffies) s0=$(steal_jiffies) h0=$(pid_jiffies "$HUB_PID") c0=$(children_jiffies) t0=$(now_us)
    "$LOAD_BIN" --hub "$HUB_URL" --hub-pid "$HUB_PID" --threads "$THREADS" --json \
        --label "$label" "$@" >"$raw" 2>>"$WORK/load.stderr" || rc=$?
    m1=$(machine_jiffies) s1=$(steal_jiffies) h1=$(pid_jiffies "$HUB_PID") c1=$(children_jiffies) t1=$(now_us)
    ((rc == 0)) || return "$rc"
    # Others = the machine's busy time minus the hub's and the generator's, steal = time the
    # hypervisor gave to someone else, both over the whole generator run (setup and drain
    # included), in % of one core (jiffies are 1/100 s).
    jq --arg mode "$mode" --argjson load1 "$l1" --argjson others \
        "$(awk -v m="$((m1 - m0))" -v h="$((h1 - h0))" -v c="$((c1 - c0))" -v us="$((t1 - t0))" \
            'BEGIN { o = (m - h - c) / (us / 1e6) ; if (o < 0) o = 0; printf "%.0f", o }')" \
        --argjson steal "$(awk -v s="$((s1 - s0))" -v us="$((t1 - t0))" 'BEGIN { printf "%.0f", s / (us / 1e6) }')" \
        --arg extra "${HUB_EXTRA[*]}" \
        '.durability = $mode | .hub_flags = $extra | .load1_before = $load1 | .others_cpu_pct = $others | .steal_pct = $steal' "$raw" >"$out"
}

# scenario LABEL MODE [fhircast-load options...]: REPEAT runs, each against a fresh hub in
# durability MODE, one table row each.
scenario() {
    wanted "$1" || return 0
    local i
    for ((i = 0; i < REPEAT; i++)); do
        scenario_once "$@"
    done
}

# Extra hub flags for the next scenarios (e.g. a bigger queue); recorded in the JSON.
HUB_EXTRA=()

scenario_once() {
    local label=$1 mode=$2
    shift 2
    log "scenario: $label ($mode${HUB_EXTRA[*]:+ ${HUB_EXTRA[*]}})"
    # shellcheck disable=SC2046
    start_hub $(mode_flags "$mode") "${HUB_EXTRA[@]}"
    local out=$WORK/out.json
    if run_load "$label" "$mode" "$@"; then
        JSONS+=("$(cat "$out")")
        ROWS+=("$(jq -r '
            def f: if . == null then "–" else tostring end;
            def mb: if . == null then "–" else ((. / 102.4 | round) / 10 | tostring) end;
            "| \(.label)\(if .hub_flags != "" then " (hub \(.hub_flags))" else "" end) | \(.durability) | \(if .config.content_sharing then "1 report" else (.config.patients | f) end) | \(.config.subscribers)\(if .config.stalled_subscribers > 0 then " +\(.config.stalled_subscribers) stalled" else "" end) | \(.config.topics) | \(if .config.rate > 0 then (.config.rate | tostring) else "max (\(.config.concurrency) in flight)" end) | \(.config.event_bytes) | \(.publish.per_s) | \(.delivery.per_s) | \(.publish.latency.p50_us) / \(.publish.latency.p99_us) | \(.delivery.latency.p50_us) | \(.delivery.latency.p99_us) | \(.delivery.latency.p99_9_us) | \(.delivery.latency.max_us) | \(.delivery.lost) | \(.errors.total) | \(.hub_process.rss_max_kb | mb) | \(.hub_process.cpu_avg_pct | f) | \(.generator_process.cpu_avg_pct | f) | \(.load1_before) / \(.others_cpu_pct) / \(.steal_pct) |"
        ' "$out")")
    else
        ROWS+=("| $label | $mode | failed: $(tail -1 "$WORK/load.stderr" | tr '|' '/') | | | | | | | | | | | | | | | | |")
    fi
    stop_hub
}

# idle LABEL MODE SUBSCRIBERS TOPICS: hold SUBSCRIBERS idle connections for 10 s, sample the hub.
idle() {
    local label=$1 mode=$2 subs=$3 topics=$4
    wanted "$label" || return 0
    log "idle: $label ($mode)"
    # shellcheck disable=SC2046
    start_hub $(mode_flags "$mode")
    local out=$WORK/out.json
    if run_load "$label" "$mode" --subscribers "$subs" --topics "$topics" --events 0 \
        --warmup 1 --duration 10; then
        JSONS+=("$(cat "$out")")
        IDLE_ROWS+=("$(jq -r '
            def mb: ((. / 102.4 | round) / 10 | tostring);
            "| \(.label) | \(.durability) | \(.setup.subscribed) | \(.config.topics) | \(.hub_process.rss_start_kb | mb) | \(.hub_process.rss_min_kb | mb) / \(.hub_process.rss_avg_kb | mb) / \(.hub_process.rss_max_kb | mb) | \(.hub_process.cpu_avg_pct) | \(.setup.setup_ms) | \(.load1_before) / \(.others_cpu_pct) / \(.steal_pct) |"
        ' "$out")")
    else
        IDLE_ROWS+=("| $label | $mode | failed: $(tail -1 "$WORK/load.stderr" | tr '|' '/') | | | | | | |")
    fi
    stop_hub
}

D=(--duration "$DURATION" --warmup "$WARMUP")

# Start-to-ready: spawn → "Lockstep hub ready at" line, fresh data dir each time, per mode.
READY_LINES=()
for mode in persist no-persist; do
    wanted "start-to-ready" || break
    READY=()
    for _ in $(seq "$READY_RUNS"); do
        # shellcheck disable=SC2046
        start_hub $(mode_flags "$mode")
        READY+=("$READY_MS")
        stop_hub
    done
    sorted=$(printf '%s\n' "${READY[@]}" | sort -n)
    med=$(awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$sorted")
    READY_LINES+=("| $mode | $(head -1 <<<"$sorted") | $med | $(tail -1 <<<"$sorted") | ${READY[*]} |")
    log "start-to-ready ms ($mode): ${READY[*]}"
done

P2=(--patients 2)
P64=(--patients 64)

# Goals. Latency: 10 subscribers on one topic at 1000 events/s; throughput: 100 subscribers,
# as fast as possible. Each without persistence, and persisted with 2 and 64 open contexts.
for m in "no-persist:P64" "persist:P2" "persist:P64"; do
    mode=${m%%:*} p=${m##*:}
    pat=(--patients "${p#P}")
    scenario "latency goal: 10 subs @ 1000/s" "$mode" --subscribers 10 --rate 1000 "${pat[@]}" "${D[@]}"
done
for m in "no-persist:P64" "persist:P2" "persist:P64"; do
    mode=${m%%:*} p=${m##*:}
    pat=(--patients "${p#P}")
    scenario "throughput: 100 subs, max" "$mode" --subscribers 100 --rate 0 --concurrency 16 "${pat[@]}" "${D[@]}"
done

# Growth with subscribers: one topic, MATRIX_RATE events/s, with and without persistence.
for mode in no-persist persist; do
    for n in 1 10 100 1000; do
        scenario "fan-out $n" "$mode" --subscribers "$n" --topics 1 --rate "$MATRIX_RATE" "${P64[@]}" "${D[@]}"
    done
done
# Growth with topics: 10 subscribers per topic, 1000 events/s in all; the 1-topic counterpart
# is the latency-goal scenario.
for m in "no-persist:P64" "persist:P2" "persist:P64"; do
    mode=${m%%:*} p=${m##*:}
    pat=(--patients "${p#P}")
    scenario "100 topics × 10" "$mode" --subscribers 1000 --topics 100 --rate 1000 "${pat[@]}" "${D[@]}"
done
# Growth with payload: content-sharing DiagnosticReport-update bundles (one open report).
for mode in no-persist persist; do
    scenario "payload 1 KB (content sharing)" "$mode" --subscribers 10 --content-sharing --payload-bytes 1024 --rate "$MATRIX_RATE" "${D[@]}"
    scenario "payload 100 KB (content sharing)" "$mode" --subscribers 10 --content-sharing --payload-bytes 102400 --rate "$MATRIX_RATE" "${D[@]}"
done
# Stalled readers: 10 KB events at 500/s fill a stalled socket's buffers within seconds; run
# past the hub's ACK timeout so it has to deal with them. Without persistence, and persisted
# with 2 open contexts (with 64 contexts of 10 KB each the context saves alone saturate a core).
STALL=(--subscribers 10 --rate 500 --payload-bytes 10240 --duration 15 --warmup "$WARMUP")
for m in "no-persist:P64" "persist:P2"; do
    mode=${m%%:*} p=${m##*:}
    pat=(--patients "${p#P}")
    scenario "stalled: baseline" "$mode" "${STALL[@]}" "${pat[@]}"
    scenario "stalled: + 2 stalled readers" "$mode" "${STALL[@]}" "${pat[@]}" --stalled-subscribers 2
done
# Stalled readers the hub keeps: a queue and an ACK timeout big enough that the 2 stalled
# readers stay connected (and their frames queued) for the whole run, at the latency-goal load.
HUB_EXTRA=(--queue-capacity 1000000 --ack-timeout-ms 600000)
KEPT=(--subscribers 10 --rate 1000 "${D[@]}")
for m in "no-persist:P64" "persist:P2"; do
    mode=${m%%:*} p=${m##*:}
    pat=(--patients "${p#P}")
    scenario "stalled kept: baseline" "$mode" "${KEPT[@]}" "${pat[@]}"
    scenario "stalled kept: + 2 stalled readers" "$mode" "${KEPT[@]}" "${pat[@]}" --stalled-subscribers 2
done
HUB_EXTRA=()
for mode in persist no-persist; do
    idle "idle hub" "$mode" 0 1
done
for mode in persist no-persist; do
    idle "1000 idle subscribers" "$mode" 1000 1
done
idle "1000 idle subscribers, 100 topics" persist 1000 100

STALLED_NOTES=$(jq -rs '.[] | select(.config.stalled_subscribers > 0) |
    "- \(.label), \(.durability), P=\(.config.patients)\(if .hub_flags != "" then ", hub \(.hub_flags)" else "" end): \(.setup.stalled_subscribed) stalled readers connected, the hub had closed \(.setup.stalled_closed_by_hub) of them by the end, \(.setup.stalled_unread_frames) notifications were left unread on their sockets."' \
    <<<"$(printf '%s\n' "${JSONS[@]}")")

{
    echo "# Lockstep benchmark results"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "- hub: $("$HUB_BIN" --version 2>/dev/null || echo lockstep-hub), generator: $("$LOAD_BIN" --version)"
    echo "- binaries (built, sha256): hub $(date -u -r "$HUB_BIN" +%H:%M:%SZ) $(sha256sum "$HUB_BIN" | cut -c1-16), generator $(date -u -r "$LOAD_BIN" +%H:%M:%SZ) $(sha256sum "$LOAD_BIN" | cut -c1-16)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr); hub and generator share the cores"
    echo "- each scenario: fresh hub (\`--no-auth\`, empty data dir; \`persist\` = as shipped, SQLite on; \`no-persist\` = \`--no-persist\`), warm-up ${WARMUP} s, measured ${DURATION} s unless noted, generator on ${THREADS} threads"
    [[ -n $ONLY ]] && echo "- only scenarios matching \`$ONLY\`"
    echo
    if ((${#READY_LINES[@]})); then
        echo "## Start-to-ready"
        echo
        echo "Spawn → \`Lockstep hub ready at\` on stdout, $READY_RUNS runs per mode, ms."
        echo
        echo "| durability | min | median | max | all |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${READY_LINES[@]}"
        echo
    fi
    if ((${#ROWS[@]})); then
        echo "## Load"
        echo
        echo "Latencies in µs. Publish = POST → 2xx; delivery = publish send instant → a subscriber's receipt. Lost = expected − received after a drain of at most 5 s. RSS max / CPU avg of the hub over the measured phase (CPU in % of one core). P = open contexts per topic the generator causes (\`--patients\`; the hub keeps at most 64). Load / others / steal = the 1-minute load average just before the run (it still carries the previous scenario) / CPU used by anything but the hub and the generator during the run (machine busy − hub − generator, % of one core; includes interrupt work the kernel charged to no process) / CPU time the hypervisor gave to other VMs (% of one core)."
        echo
        echo "| scenario | durability | P | subs | topics | rate ev/s | event B | published/s | deliveries/s | publish p50 / p99 | delivery p50 | p99 | p99.9 | max | lost | errors | hub RSS MB | hub CPU % | generator CPU % | load / others % / steal % |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        [[ -n $STALLED_NOTES ]] && echo "$STALLED_NOTES" && echo
    fi
    if ((${#IDLE_ROWS[@]})); then
        echo "## Idle"
        echo
        echo "Hub sampled over 10 s with no events."
        echo
        echo "| measurement | durability | subscribers | topics | RSS at start MB | RSS min / avg / max MB | CPU avg % | subscribe setup ms | load / others % / steal % |"
        echo "|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${IDLE_ROWS[@]}"
    fi
} | tee "$RESULTS/latest.md"

printf '%s\n' "${JSONS[@]}" | jq -s . >"$RESULTS/latest.json"
log "wrote $RESULTS/latest.md and $RESULTS/latest.json"
