#!/usr/bin/env bash
# Reproducible load benchmark of bkvy against an instant fake upstream.
#
#   bash benches/load.sh
#
# bkvy runs pinned to one core (WORKERS=1, taskset BKVY_CORE); the load generator (oha, or
# stream_load) and the fake upstream share the other core (LOAD_CORE). For every rate the fake is called directly (same
# OpenAI request path, Bearer key) and then through bkvy, so the two rows of a rate come
# from the same minute of the same run. Then: a saturation run (no rate limit) of each,
# the same bkvy runs with statistics logging switched on, and a run where one provider's
# models fail 20 % of calls with 500. What statistics logging and the access log cost is
# read from paired saturation runs (plain bkvy against the variant, in the order
# A B B A, each freshly started), so that a change in the machine's speed during the run
# falls on both sides alike. The stream phase does the same for streaming
# completions with benches/stream_load (an open-loop generator that times the first token,
# which oha cannot). See docs/PERFORMANCE.md for the method and results.
#
# Everything is configurable through the environment:
#   RATES="500 1000 2000 5000"   fixed request rates (requests/s)
#   DURATION=10s                 each measured run
#   SAT_DURATION=10s             each saturation run
#   PAIRS=1                      A B B A rounds of the paired saturation runs (stats, nolog)
#   WARMUP=2s                    warm-up through bkvy after every (re)start of a process
#   CONNS=50                     keep-alive connections of the load generator
#   BKVY_CORE=0 LOAD_CORE=1      CPU pinning
#   BKVY_ROUTE=intelligence      or "direct" (POST /llm/direct to the same model)
#   BKVY_LOG_LEVEL=info          bkvy's LOG_LEVEL (info = one access-log line per request)
#   RUN_BASE=1                   the base phase (direct vs bkvy at RATES, then saturation)
#   RUN_STATS=1 RUN_FAILOVER=1 RUN_NOLOG=1 RUN_NGINX=1   optional phases (0 = skip)
#   RUN_FLOOR=1                  the stack floor: benches/proxy_floor (actix-web + awc
#                                pass-through, nothing else) on bkvy's core, same rates
#   RUN_STREAM=1                 the stream phase: "stream": true on /v1/chat/completions,
#                                direct vs bkvy (model "low"), time to first token and chunks
#   STREAM_RATE=1000             its fixed rates (streams/s; a list like RATES), then saturation
#   STREAM_WORDS=32              content chunks per streamed answer (one word each)
#   only the stream phase:  RUN_BASE=0 RUN_STATS=0 RUN_FAILOVER=0 RUN_NOLOG=0 RUN_NGINX=0 bash benches/load.sh
#   RESULTS_DIR=<tmp>/results    where raw oha JSON and the table are kept
#   PORT_BASE=18400              ports PORT_BASE .. PORT_BASE+4 must be free
#   SKIP_BUILD=1                 use the existing target/release/bkvy (and stream_load)
#   PROFILE=1                    record bkvy with `perf` during its base saturation run
#   RUN_HOP=1                    the hop phase (first, ~20 s): a one-byte TCP echo between the
#                                two cores and on one core, pausing 1/rate between round trips
#                                (benches/hop.py): what the layout alone adds to every proxy's Δp50
#   RUN_INSTR=1                  the instr phase (needs valgrind): instructions per request of
#                                bkvy (plain, access log off, statistics on), the stack floor
#                                and nginx under callgrind, sequential requests; repeatable
#                                where timings are not (INSTR_N1=300 INSTR_N2=1300 requests)
#   BKVY_REF_BIN=<path>          a reference bkvy binary (an earlier build): the instr phase
#                                measures it too, on /llm/intelligence and on /v1 ("model":
#                                "low"), and the report gives the change against it, so two
#                                binaries are compared within one run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RATES=${RATES:-"500 1000 2000 5000"}
DURATION=${DURATION:-10s}
SAT_DURATION=${SAT_DURATION:-10s}
PAIRS=${PAIRS:-1}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
BKVY_CORE=${BKVY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
BKVY_ROUTE=${BKVY_ROUTE:-intelligence}
BKVY_LOG_LEVEL=${BKVY_LOG_LEVEL:-info}
RUN_BASE=${RUN_BASE:-1}
RUN_STATS=${RUN_STATS:-1}
RUN_FAILOVER=${RUN_FAILOVER:-1}
RUN_NOLOG=${RUN_NOLOG:-1}
RUN_NGINX=${RUN_NGINX:-1}
RUN_FLOOR=${RUN_FLOOR:-1}
# The floors run inside the base phase only.
if [ "$RUN_BASE" != 1 ]; then RUN_FLOOR=0; RUN_NGINX=0; fi
PORT_BASE=${PORT_BASE:-18400}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-0}
RUN_STREAM=${RUN_STREAM:-1}
RUN_INSTR=${RUN_INSTR:-1}
RUN_HOP=${RUN_HOP:-1}
INSTR_N1=${INSTR_N1:-300}
INSTR_N2=${INSTR_N2:-1300}
STREAM_RATE=${STREAM_RATE:-1000}
STREAM_WORDS=${STREAM_WORDS:-32}

BKVY_PORT=$PORT_BASE
FAKE_PORT=$((PORT_BASE + 1))
FAIL_PORT=$((PORT_BASE + 2))
NGINX_PORT=$((PORT_BASE + 3))
FLOOR_PORT=$((PORT_BASE + 4))

WORK=$(mktemp -d /tmp/bkvy-load.XXXXXX)
RESULTS_DIR=${RESULTS_DIR:-$WORK/results}
mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/results.tsv"
: >"$RESULTS"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[load] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tools and binary
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
command -v taskset >/dev/null || { log "taskset (util-linux) is required"; exit 1; }
# oha drives every phase but the stream phase (which uses benches/stream_load).
NEED_OHA=0
for v in "$RUN_BASE" "$RUN_STATS" "$RUN_FAILOVER" "$RUN_NOLOG" "$RUN_NGINX" "$RUN_FLOOR" "$RUN_INSTR"; do
    if [ "$v" = 1 ]; then NEED_OHA=1; fi
done
OHA_JSON=()
OHA_EXTRA=()
if [ "$NEED_OHA" = 1 ]; then
    if ! command -v oha >/dev/null; then
        if [ -x "$HOME/.cargo/bin/oha" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            log "installing oha (cargo install oha --locked)"
            cargo install oha --locked
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
    # Newer oha spells JSON output --output-format json; older ones -j/--json.
    if oha --help 2>/dev/null | grep -q -- '--output-format'; then
        OHA_JSON=(--output-format json)
    else
        OHA_JSON=(--json)
    fi
    OHA_EXTRA=(--no-tui)
    if oha --help 2>/dev/null | grep -q -- '--wait-ongoing-requests-after-deadline'; then
        OHA_EXTRA+=(--wait-ongoing-requests-after-deadline)
    fi
fi

if [ "$SKIP_BUILD" != 1 ]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --bin bkvy)
    if [ "$RUN_STREAM" = 1 ]; then
        log "building the streaming load generator (bench target stream_load)"
        (cd "$ROOT" && cargo build --release --bench stream_load)
    fi
    if [ "$RUN_FLOOR" = 1 ] || [ "$RUN_INSTR" = 1 ]; then
        log "building the stack floor (bench target proxy_floor)"
        (cd "$ROOT" && cargo build --release --bench proxy_floor)
    fi
fi
# A bench target's executable carries a hash in its name; take the newest one.
bench_exe() { find "$ROOT/target/release/deps" -maxdepth 1 -type f -name "$1-*" -perm -u+x \
    -printf '%T@ %p\n' 2>/dev/null | sort -rn | awk 'NR == 1 {print $2}'; }
BIN="$ROOT/target/release/bkvy"
[ -x "$BIN" ] || { log "missing $BIN"; exit 1; }
if [ "$RUN_STREAM" = 1 ]; then
    STREAM_LOAD=$(bench_exe stream_load)
    [ -n "$STREAM_LOAD" ] || { log "missing target/release/deps/stream_load-*; build it with cargo build --release --bench stream_load"; exit 1; }
fi
if [ "$RUN_FLOOR" = 1 ] || [ "$RUN_INSTR" = 1 ]; then
    PROXY_FLOOR=$(bench_exe proxy_floor)
    [ -n "$PROXY_FLOOR" ] || { log "missing target/release/deps/proxy_floor-*; build it with cargo build --release --bench proxy_floor"; exit 1; }
fi

# ---------------------------------------------------------------- config: 3 providers x 2 keys x 5 models
# The cheapest low-tier model is OpenAI's, so /llm/intelligence (low) calls the same fake
# path (/v1/chat/completions) as the direct runs. Limits are far above anything reached.
write_config() { # DIR OPENAI_BASE OTHER_BASE
    python3 - "$@" <<'PY'
import json, os, sys
out, openai_base, other_base = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
limit = {"rpm": 10_000_000, "rpd": 1_000_000_000}
def provider(models, base, path, extra=None):
    p = {"connect_timeout_seconds": 2, "timeout_seconds": 20,
         "keys": {f"k{i}": {"api_key": f"bench-key-{i}", "rate_limits": {m[0]: limit for m in models}} for i in (1, 2)},
         "models": {}}
    for name, tier, cin, cout in models:
        p["models"][name] = {"endpoint": base + path(name), "cost_per_1k_input_tokens": cin,
                             "cost_per_1k_output_tokens": cout, "intelligence_tier": tier,
                             "supports_thinking": False, "avg_response_time_ms": 500}
        if extra:
            p["models"][name].update(extra)
    return p
providers = {
    "openai": provider([("gpt-4o-mini", "low", 0.0001, 0.0004), ("gpt-4.1-nano", "low", 0.00012, 0.0005),
                        ("gpt-4.1-mini", "medium", 0.0004, 0.0016), ("gpt-4o", "medium", 0.0025, 0.01),
                        ("gpt-4.1", "high", 0.002, 0.008)],
                       openai_base, lambda m: "/v1/chat/completions"),
    "gemini": provider([("gemini-2.0-flash-lite", "low", 0.0002, 0.0008), ("gemini-2.0-flash", "low", 0.00025, 0.001),
                        ("gemini-2.5-flash-lite", "medium", 0.0003, 0.0012), ("gemini-2.5-flash", "medium", 0.0003, 0.0025),
                        ("gemini-2.5-pro", "high", 0.00125, 0.01)],
                       other_base, lambda m: f"/v1beta/models/{m}:generateContent"),
    "anthropic": provider([("claude-3-5-haiku-latest", "low", 0.0008, 0.004), ("claude-haiku-4-5", "low", 0.001, 0.005),
                           ("claude-sonnet-4-0", "medium", 0.003, 0.015), ("claude-sonnet-4-5", "medium", 0.003, 0.015),
                           ("claude-opus-4-1", "high", 0.015, 0.075)],
                          other_base, lambda m: "/v1/messages", {"version": "2023-06-01"}),
}
with open(os.path.join(out, "providers.json"), "w") as f:
    json.dump(providers, f, indent=1)
with open(os.path.join(out, "routing.json"), "w") as f:
    json.dump({"request_timeout_seconds": 30, "scenarios": {}}, f, indent=1)
PY
}
write_config "$WORK/config" "http://127.0.0.1:$FAKE_PORT" "http://127.0.0.1:$FAKE_PORT"
write_config "$WORK/config-failing" "http://127.0.0.1:$FAIL_PORT" "http://127.0.0.1:$FAKE_PORT"

PROMPT='[{"role":"user","content":"Is Santa real?"}]'
printf '{"model":"gpt-4o-mini","messages":%s,"max_completion_tokens":100}' "$PROMPT" >"$WORK/direct.json"
if [ "$BKVY_ROUTE" = direct ]; then
    BKVY_PATH=/llm/direct
    printf '{"client_id":"bench","provider":"openai","model":"gpt-4o-mini","max_wait_seconds":30,"messages":%s,"options":{"max_tokens":100}}' \
        "$PROMPT" >"$WORK/bkvy.json"
else
    BKVY_PATH=/llm/intelligence
    printf '{"client_id":"bench","intelligence_level":"low","max_wait_seconds":30,"messages":%s,"options":{"max_tokens":100}}' \
        "$PROMPT" >"$WORK/bkvy.json"
fi
DIRECT_URL="http://127.0.0.1:$FAKE_PORT/v1/chat/completions"
# Streaming: the fake answers "[gpt-4o-mini] <prompt>" one word per chunk, so a prompt of
# STREAM_WORDS - 1 words gives STREAM_WORDS content chunks. Both sides speak OpenAI's
# format; "low" routes to gpt-4o-mini on the same fake path as the direct run.
STREAM_PROMPT=$(python3 -c "import sys; print(' '.join(f'word{i}' for i in range(1, int(sys.argv[1]))))" "$STREAM_WORDS")
STREAM_MAX=$((STREAM_WORDS + 100))
printf '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"%s"}],"max_completion_tokens":%d,"stream":true}' \
    "$STREAM_PROMPT" "$STREAM_MAX" >"$WORK/stream-direct.json"
printf '{"model":"low","messages":[{"role":"user","content":"%s"}],"max_completion_tokens":%d,"stream":true}' \
    "$STREAM_PROMPT" "$STREAM_MAX" >"$WORK/stream-bkvy.json"
STREAM_BKVY_URL="http://127.0.0.1:$BKVY_PORT/v1/chat/completions"
BKVY_URL="http://127.0.0.1:$BKVY_PORT$BKVY_PATH"

# ---------------------------------------------------------------- processes
wait_http() { # URL [TRIES, 0.1 s apart; default 100]
    local i
    for i in $(seq 1 "${2:-100}"); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    log "no answer from $1"
    return 1
}

FAKE_PID=""
start_fake() { # start (or restart) the instant fake; its request log grows, so it is fresh per step
    if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; fi
    LOG_LEVEL=warn taskset -c "$LOAD_CORE" "$BIN" fake-upstream --host 127.0.0.1 --port "$FAKE_PORT" --workers 1 \
        >>"$WORK/fake.log" 2>&1 &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    wait_http "http://127.0.0.1:$FAKE_PORT/api/version"
}

FAIL_PID=""
start_failing_fake() {
    LOG_LEVEL=warn taskset -c "$LOAD_CORE" "$BIN" fake-upstream --host 127.0.0.1 --port "$FAIL_PORT" --workers 1 \
        --fail-rate 0.2 --fail-status 500 >>"$WORK/fake-failing.log" 2>&1 &
    FAIL_PID=$!
    PIDS+=("$FAIL_PID")
    wait_http "http://127.0.0.1:$FAIL_PORT/api/version"
}

BKVY_PID=""
stop_bkvy() {
    if [ -n "$BKVY_PID" ]; then kill "$BKVY_PID" 2>/dev/null || true; wait "$BKVY_PID" 2>/dev/null || true; fi
    BKVY_PID=""
}
start_bkvy() { # CONFIG_DIR [VAR=value ...]
    local dir=$1
    shift
    stop_bkvy
    : >"$WORK/bkvy.log"
    env STATE_DIR="$WORK/state" "$@" WORKERS=1 LOG_LEVEL="${BKVY_LOG_LEVEL_NOW:-$BKVY_LOG_LEVEL}" \
        taskset -c "$BKVY_CORE" "$BIN" serve --config-dir "$dir" --host 127.0.0.1 --port "$BKVY_PORT" \
        >>"$WORK/bkvy.log" 2>&1 &
    BKVY_PID=$!
    PIDS+=("$BKVY_PID")
    wait_http "http://127.0.0.1:$BKVY_PORT/health"
}

# The floors, run on bkvy's core beside it (each idle while another is measured): nginx as a
# reverse proxy (only when installed) and benches/proxy_floor, the actix-web + awc stack
# bkvy is built on with nothing else.
NGINX_PID=""
nginx_conf() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    upstream fake { server 127.0.0.1:$FAKE_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}
start_nginx() {
    nginx_conf
    # One process (no master), so its CPU time and memory are those of the one worker.
    taskset -c "$BKVY_CORE" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NGINX_PORT/api/version"
}
FLOOR_PID=""
start_floor() {
    taskset -c "$BKVY_CORE" "$PROXY_FLOOR" --listen "127.0.0.1:$FLOOR_PORT" --upstream "$DIRECT_URL" \
        >>"$WORK/floor.log" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    wait_http "http://127.0.0.1:$FLOOR_PORT/"
}

# CPU time of all of a process's threads in nanoseconds (scheduler accounting, exact; the
# tick-based utime/stime of /proc/PID/stat are biased for processes that wake often).
cpu_ns() { cat "/proc/$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# Resets VmHWM to the current RSS so each run reports its own peak (Linux >= 4.0).
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# The process on the bkvy core that a run measures: bkvy, nginx or the stack floor (the
# direct runs measure nothing there).
measured_pid() {
    case "$1" in
        bkvy | ref) echo "$BKVY_PID" ;;
        nginx) echo "${NGINX_PID:-}" ;;
        floor) echo "${FLOOR_PID:-}" ;;
        *) echo "" ;;
    esac
}

# measure_begin NAME: before a run through the measured process, reset its peak RSS and
# note its CPU time.
measure_begin() {
    M_T0=0
    M_PID=$(measured_pid "$1")
    if [ -n "$M_PID" ]; then reset_peak "$M_PID"; M_T0=$(cpu_ns "$M_PID"); fi
}

# measure_end PHASE TARGET NAME OUT: one results row; for the measured process with its
# CPU time since measure_begin, peak RSS and RSS.
measure_end() {
    local cpu_s="" hwm="" rss=""
    if [ -n "$M_PID" ]; then
        local t1
        t1=$(cpu_ns "$M_PID")
        cpu_s=$(python3 -c "print(($t1 - $M_T0) / 1e9)")
        hwm=$(status_kb "$M_PID" VmHWM)
        rss=$(status_kb "$M_PID" VmRSS)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${cpu_s:--}" "${hwm:--}" "${rss:--}" >>"$RESULTS"
}

# ---------------------------------------------------------------- one measured run
# run PHASE TARGET PATHNAME RATE DURATION URL BODY [oha args...]
# RATE 0 = saturation. Appends one line to $RESULTS.
run() {
    local phase=$1 target=$2 name=$3 rate=$4 dur=$5 url=$6 body=$7
    shift 7
    local out="$RESULTS_DIR/$phase-$name-$target.json"
    local args=("${OHA_EXTRA[@]}" "${OHA_JSON[@]}" -z "$dur" -c "$CONNS" -m POST
        -H "Content-Type: application/json" -D "$body" "$@")
    if [ "$rate" != 0 ]; then args+=(-q "$rate" --latency-correction); fi
    measure_begin "$name"
    taskset -c "$LOAD_CORE" oha "${args[@]}" "$url" >"$out" 2>"$out.err" || log "oha failed for $phase $name $target"
    measure_end "$phase" "$target" "$name" "$out"
    python3 - "$out" "$name" "$phase" "$target" <<'PY' >&2
import json, sys
path, name, phase, target = sys.argv[1:5]
try:
    d = json.load(open(path))
    s = d["summary"]; p = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {})
    errs = sum(d.get("errorDistribution", {}).values()) + sum(v for k, v in codes.items() if not k.startswith("2"))
    print(f"[load]   {phase:9} {name:6} {target:>5}: {s['requestsPerSec']:9.0f} req/s  p50 {1e3*(p.get('p50') or 0):7.3f} ms  p99 {1e3*(p.get('p99') or 0):7.3f} ms  errors {errs}")
except Exception as e:
    print(f"[load]   {phase} {name} {target}: could not read {path}: {e}")
PY
}

direct() { run "$1" "$2" direct "$3" "$4" "$DIRECT_URL" "$WORK/direct.json" -H "Authorization: Bearer bench-key-1"; }
via_bkvy() { run "$1" "$2" bkvy "$3" "$4" "$BKVY_URL" "$WORK/bkvy.json"; }
via_floor() { run "$1" "$2" floor "$3" "$4" "http://127.0.0.1:$FLOOR_PORT/v1/chat/completions" "$WORK/direct.json" \
    -H "Authorization: Bearer bench-key-1"; }
via_nginx() { run "$1" "$2" nginx "$3" "$4" "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" "$WORK/direct.json" \
    -H "Authorization: Bearer bench-key-1"; }
FLOORS=()
# A floor's upstream connections die with every restart of the fake: a short warm-up first.
warm_floor() { taskset -c "$LOAD_CORE" oha "${OHA_EXTRA[@]}" "${OHA_JSON[@]}" -z 1s -c "$CONNS" -q 1000 -m POST \
    -H "Content-Type: application/json" -H "Authorization: Bearer bench-key-1" -D "$WORK/direct.json" \
    "http://127.0.0.1:$1/v1/chat/completions" >/dev/null 2>&1 || true; }
floor_port() { if [ "$1" = floor ]; then echo "$FLOOR_PORT"; else echo "$NGINX_PORT"; fi; }
warm() { taskset -c "$LOAD_CORE" oha "${OHA_EXTRA[@]}" "${OHA_JSON[@]}" -z "$WARMUP" -c "$CONNS" -q 1000 -m POST \
    -H "Content-Type: application/json" -D "$WORK/bkvy.json" "$BKVY_URL" >/dev/null 2>&1 || true; }

# run_stream TARGET PATHNAME RATE DURATION URL BODY [generator args...]: one streaming run
# with benches/stream_load (RATE 0 = closed-loop saturation over CONNS connections).
run_stream() {
    local target=$1 name=$2 rate=$3 dur=$4 url=$5 body=$6
    shift 6
    local out="$RESULTS_DIR/stream-$name-$target.json"
    measure_begin "$name"
    taskset -c "$LOAD_CORE" "$STREAM_LOAD" --url "$url" --body-file "$body" --rate "$rate" --duration "$dur" \
        -c "$CONNS" "$@" >"$out" 2>"$out.err" || log "stream_load failed for stream $name $target"
    measure_end stream "$target" "$name" "$out"
    log "  stream    $name $target: $(tail -n 1 "$out.err")"
}
stream_direct() { run_stream "$1" direct "$2" "$3" "$DIRECT_URL" "$WORK/stream-direct.json" -H "Authorization: Bearer bench-key-1"; }
stream_bkvy() { run_stream "$1" bkvy "$2" "$3" "$STREAM_BKVY_URL" "$WORK/stream-bkvy.json" -H "Authorization: Bearer bench"; }
stream_warm() { taskset -c "$LOAD_CORE" "$STREAM_LOAD" --url "$STREAM_BKVY_URL" --body-file "$WORK/stream-bkvy.json" \
    --rate 1000 --duration "$WARMUP" -c "$CONNS" -H "Authorization: Bearer bench" >/dev/null 2>&1 || true; }

# paired_sat PHASE START_VARIANT: PAIRS rounds of saturation runs in the order A B B A,
# A = plain bkvy (rows named "ref"), B = the variant started by START_VARIANT (rows named
# "bkvy"), each on a freshly started bkvy and fake. Targets are sat-1, sat-2, ...
start_plain() { start_bkvy "$WORK/config"; }
paired_sat() {
    local phase=$1 variant=$2 i which n=0
    for i in $(seq 1 "$PAIRS"); do
        for which in ref bkvy bkvy ref; do
            n=$((n + 1))
            start_fake
            if [ "$which" = ref ]; then start_plain; else "$variant"; fi
            warm
            run "$phase" "sat-$n" "$which" 0 "$SAT_DURATION" "$BKVY_URL" "$WORK/bkvy.json"
        done
    done
}

scrape() { curl -s "http://127.0.0.1:$BKVY_PORT/metrics" >"$RESULTS_DIR/$1.metrics" || true; }

# ---------------------------------------------------------------- phases
log "work dir $WORK; bkvy on core $BKVY_CORE, oha + fake on core $LOAD_CORE; $CONNS connections"
if [ "$RUN_HOP" = 1 ]; then
    # Before anything else runs: the cost of crossing between the two cores.
    log "phase hop: one-byte TCP echo across cores $BKVY_CORE/$LOAD_CORE and on core $LOAD_CORE"
    gaps=()
    for rate in $RATES; do gaps+=("$(python3 -c "print(1 / $rate)")"); done
    python3 "$ROOT/benches/hop.py" "$BKVY_CORE" "$LOAD_CORE" "${gaps[@]}" >"$RESULTS_DIR/hop.tsv"
fi
start_fake
start_bkvy "$WORK/config"
if [ "$RUN_BASE" = 1 ]; then
    if [ "$RUN_FLOOR" = 1 ]; then start_floor; FLOORS+=(floor); fi
    if [ "$RUN_NGINX" = 1 ]; then
        if command -v nginx >/dev/null; then start_nginx; FLOORS+=(nginx); else log "nginx is not installed: no nginx rows"; fi
    fi
    log "phase base: direct vs bkvy${FLOORS[*]:+ vs ${FLOORS[*]}}, interleaved per rate"
    for r in $RATES; do
        start_fake
        warm
        direct base "$r" "$r" "$DURATION"
        via_bkvy base "$r" "$r" "$DURATION"
        for f in "${FLOORS[@]}"; do warm_floor "$(floor_port "$f")"; "via_$f" base "$r" "$r" "$DURATION"; done
    done
    start_fake
    warm
    direct base sat 0 "$SAT_DURATION"
    via_bkvy base sat 0 "$SAT_DURATION"
    for f in "${FLOORS[@]}"; do warm_floor "$(floor_port "$f")"; "via_$f" base sat 0 "$SAT_DURATION"; done
fi
if [ "$RUN_BASE" = 1 ] && [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
    # An extra saturation run under perf (not in the table: sampling slows bkvy down).
    # Software clock: hardware counters are often missing in VMs. Without frame pointers
    # the call chains are partial; the self-time ranking by symbol is what to read.
    perf record -q -e cpu-clock -F 999 -g -p "$BKVY_PID" -o "$RESULTS_DIR/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.5
    taskset -c "$LOAD_CORE" oha "${OHA_EXTRA[@]}" "${OHA_JSON[@]}" -z "$SAT_DURATION" -c "$CONNS" -m POST \
        -H "Content-Type: application/json" -D "$WORK/bkvy.json" "$BKVY_URL" >"$RESULTS_DIR/profile-run.json" 2>&1 || true
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    perf report -i "$RESULTS_DIR/perf.data" --stdio --no-children -g none --percent-limit 0.3 --sort dso,symbol 2>/dev/null \
        | grep -v '^$' | grep -v '^#' | grep '%' | awk '{$1=$1; print}' | sed 's/ - -$//' | head -60 >"$RESULTS_DIR/perf-top.txt" || true
    log "perf profile (self time by symbol): $RESULTS_DIR/perf-top.txt"
fi
if [ "$RUN_BASE" = 1 ]; then scrape base; fi

if [ "$RUN_STREAM" = 1 ]; then
    log "phase stream: \"stream\": true on /v1/chat/completions, $STREAM_WORDS chunks per answer"
    # A fresh bkvy, so its /metrics afterwards count the streaming phase only.
    start_fake
    start_bkvy "$WORK/config"
    for r in $STREAM_RATE; do
        start_fake
        stream_warm
        stream_direct "$r" "$r" "$DURATION"
        stream_bkvy "$r" "$r" "$DURATION"
    done
    start_fake
    stream_warm
    stream_direct sat 0 "$SAT_DURATION"
    stream_bkvy sat 0 "$SAT_DURATION"
    scrape stream
fi

if [ "$RUN_NOLOG" = 1 ]; then
    log "phase nolog: bkvy with LOG_LEVEL=warn (no access log) against plain bkvy, paired saturation runs"
    start_nolog() { BKVY_LOG_LEVEL_NOW=warn start_bkvy "$WORK/config"; }
    paired_sat nolog start_nolog
fi

if [ "$RUN_STATS" = 1 ]; then
    log "phase stats: TRANSACTION_LOGGING=true SUMMARY_STATS=true"
    mkdir -p "$WORK/stats-logs"
    start_stats() { start_bkvy "$WORK/config" TRANSACTION_LOGGING=true SUMMARY_STATS=true LOG_DIR="$WORK/stats-logs"; }
    start_fake
    start_stats
    for r in $RATES; do
        start_fake
        warm
        via_bkvy stats "$r" "$r" "$DURATION"
    done
    scrape stats
    paired_sat stats start_stats
    n=$(find "$WORK/stats-logs" -type f | wc -l)
    echo "$n" >"$RESULTS_DIR/stats-files"
    log "stats phase wrote $n file(s) under LOG_DIR"
fi

if [ "$RUN_FAILOVER" = 1 ]; then
    log "phase failover: OpenAI's models (the cheapest low tier) fail 20 % of calls with 500"
    start_fake
    start_failing_fake
    start_bkvy "$WORK/config-failing"
    for r in $RATES; do
        via_bkvy failover "$r" "$r" "$DURATION"
    done
    via_bkvy failover sat 0 "$SAT_DURATION"
    scrape failover
fi

if [ "$RUN_INSTR" = 1 ]; then
    if ! command -v valgrind >/dev/null; then
        log "valgrind is not installed: no instr phase (apt-get install valgrind)"
    else
        log "phase instr: instructions per request under callgrind ($INSTR_N1 and $INSTR_N2 sequential requests)"
        stop_bkvy
        start_fake
        mkdir -p "$RESULTS_DIR/callgrind"
        : >"$RESULTS_DIR/instr.tsv"
        # The floors of the base phase hold their ports: they are measured again here.
        for p in ${FLOOR_PID:-} ${NGINX_PID:-}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        # instr_total NAME N PORT URL BODY [oha args...] -- COMMAND...: runs COMMAND under
        # callgrind, sends N sequential requests, stops it with SIGTERM and prints the
        # instruction count of all its threads (start and stop included: they cancel out
        # in the difference of two counts).
        instr_total() {
            local name=$1 n=$2 port=$3 url=$4 body=$5
            shift 5
            local oha_args=()
            while [ "$1" != -- ]; do oha_args+=("$1"); shift; done
            shift
            # Leading VAR=value words are the environment (set outside valgrind, which
            # does not follow an exec such as env's).
            local envs=()
            while [[ "$1" == *=* ]]; do envs+=("$1"); shift; done
            local out="$RESULTS_DIR/callgrind/$name-$n.out"
            rm -f "$out"
            # Each run starts from nothing: no rate state or statistics from the one before.
            rm -rf "$WORK/instr-run"
            env STATE_DIR="$WORK/instr-run/state" LOG_DIR="$WORK/instr-run/logs" "${envs[@]}" taskset -c "$BKVY_CORE" valgrind --tool=callgrind --callgrind-out-file="$out" \
                --dump-instr=no --dump-line=no "$@" >>"$WORK/instr-$name.log" 2>&1 &
            local pid=$!
            PIDS+=("$pid")
            # Programs start slowly under valgrind: up to a minute.
            wait_http "http://127.0.0.1:$port/" 600 || true
            taskset -c "$LOAD_CORE" oha "${OHA_EXTRA[@]}" "${OHA_JSON[@]}" -n "$n" -c 1 -m POST \
                -H "Content-Type: application/json" -D "$body" "${oha_args[@]}" "$url" \
                >"$RESULTS_DIR/callgrind/$name-$n.json" 2>/dev/null || log "oha failed for instr $name $n"
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            local total
            total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out" 2>/dev/null || true)
            echo "${total:-0}"
        }
        instr_target() { # NAME PORT URL BODY [oha args...] -- COMMAND...
            local name=$1
            shift
            local a b
            a=$(instr_total "$name" "$INSTR_N1" "$@")
            b=$(instr_total "$name" "$INSTR_N2" "$@")
            printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$INSTR_N1" "$a" "$INSTR_N2" "$b" >>"$RESULTS_DIR/instr.tsv"
            log "  instr     $name: $a instructions for $INSTR_N1 requests, $b for $INSTR_N2"
        }
        bkvy_cmd=("$BIN" serve --config-dir "$WORK/config" --host 127.0.0.1 --port "$BKVY_PORT")
        instr_target bkvy "$BKVY_PORT" "$BKVY_URL" "$WORK/bkvy.json" -- \
            WORKERS=1 LOG_LEVEL="$BKVY_LOG_LEVEL" "${bkvy_cmd[@]}"
        instr_target bkvy-nolog "$BKVY_PORT" "$BKVY_URL" "$WORK/bkvy.json" -- \
            WORKERS=1 LOG_LEVEL=warn "${bkvy_cmd[@]}"
        instr_target bkvy-stats "$BKVY_PORT" "$BKVY_URL" "$WORK/bkvy.json" -- \
            WORKERS=1 LOG_LEVEL="$BKVY_LOG_LEVEL" TRANSACTION_LOGGING=true SUMMARY_STATS=true "${bkvy_cmd[@]}"
        if [ -n "${BKVY_REF_BIN:-}" ]; then
            printf '{"model":"low","messages":%s,"max_completion_tokens":100}' "$PROMPT" >"$WORK/v1.json"
            V1_URL="http://127.0.0.1:$BKVY_PORT/v1/chat/completions"
            ref_cmd=("$BKVY_REF_BIN" serve --config-dir "$WORK/config" --host 127.0.0.1 --port "$BKVY_PORT")
            instr_target bkvy-ref "$BKVY_PORT" "$BKVY_URL" "$WORK/bkvy.json" -- \
                WORKERS=1 LOG_LEVEL="$BKVY_LOG_LEVEL" "${ref_cmd[@]}"
            instr_target bkvy-v1 "$BKVY_PORT" "$V1_URL" "$WORK/v1.json" -- \
                WORKERS=1 LOG_LEVEL="$BKVY_LOG_LEVEL" "${bkvy_cmd[@]}"
            instr_target bkvy-v1-ref "$BKVY_PORT" "$V1_URL" "$WORK/v1.json" -- \
                WORKERS=1 LOG_LEVEL="$BKVY_LOG_LEVEL" "${ref_cmd[@]}"
        fi
        instr_target floor "$FLOOR_PORT" "http://127.0.0.1:$FLOOR_PORT/v1/chat/completions" "$WORK/direct.json" \
            -H "Authorization: Bearer bench-key-1" -- \
            "$PROXY_FLOOR" --listen "127.0.0.1:$FLOOR_PORT" --upstream "$DIRECT_URL"
        if command -v nginx >/dev/null; then
            nginx_conf
            instr_target nginx "$NGINX_PORT" "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" "$WORK/direct.json" \
                -H "Authorization: Bearer bench-key-1" -- \
                nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
        fi
    fi
fi

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$RESULTS_DIR" <<'PY' | tee "$RESULTS_DIR/table.md"
import json, os, re, sys
results, rdir = sys.argv[1:3]
rows = []
streams = []
for line in open(results):
    phase, target, name, path, cpu, hwm, rss = line.rstrip("\n").split("\t")
    try:
        d = json.load(open(path))
    except Exception:
        continue
    if phase == "stream":
        # benches/stream_load output: the main table's percentiles are time to first token.
        e = d.get("errors", {})
        broken = sum(e.get(k, 0) for k in ("no_done", "error_event", "malformed", "timeout"))
        sec = lambda v: None if v is None else v / 1e3
        row = dict(phase=phase, target=target, name=name, rps=d.get("achieved_rate") or 0,
                   p50=sec(d["ttft_ms"]["p50"]), p90=sec(d["ttft_ms"]["p90"]), p99=sec(d["ttft_ms"]["p99"]),
                   non2xx=e.get("non_2xx", 0), conn=e.get("connect", 0), broken=broken, total=d.get("streams", 0),
                   cpu=None if cpu == "-" else float(cpu), hwm=None if hwm == "-" else int(hwm) / 1024,
                   rss=None if rss == "-" else int(rss) / 1024,
                   errs={m: 1 for m in d.get("connect_error_samples", [])}, stream=d)
        rows.append(row)
        streams.append(row)
        continue
    s = d["summary"]; p = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {})
    non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
    conn_errs = sum(d.get("errorDistribution", {}).values())
    total = sum(codes.values()) + conn_errs
    rows.append(dict(phase=phase, target=target, name=name, rps=s.get("requestsPerSec") or 0,
                     p50=p.get("p50"), p90=p.get("p90"), p99=p.get("p99"), non2xx=non2xx,
                     conn=conn_errs, total=total, cpu=None if cpu == "-" else float(cpu),
                     hwm=None if hwm == "-" else int(hwm) / 1024, rss=None if rss == "-" else int(rss) / 1024,
                     errs=d.get("errorDistribution", {})))
# Δ against the direct run of the same target: the stream phase's own, else the base phase's.
direct = {("stream" if r["phase"] == "stream" else "base", r["target"]): r for r in rows if r["name"] == "direct"}
ms = lambda v: "-" if v is None else f"{v * 1e3:.3f}"
def delta_us(a, b):
    return "-" if a is None or b is None else f"{(a - b) * 1e6:+.0f}"
print("| phase | target (req/s) | path | achieved (req/s) | p50 ms | p90 ms | p99 ms | errors (non-2xx / conn) | Δp50 µs | Δp99 µs | CPU µs/req | peak RSS MB | RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    d = direct.get(("stream" if r["phase"] == "stream" else "base", r["target"])) if r["name"] != "direct" else None
    cpu = "-" if r["cpu"] is None or not r["total"] else f"{r['cpu'] * 1e6 / r['total']:.1f}"
    hwm = "-" if r["hwm"] is None else f"{r['hwm']:.1f}"
    rss = "-" if r["rss"] is None else f"{r['rss']:.1f}"
    print(f"| {r['phase']} | {r['target']} | {r['name']} | {r['rps']:.0f} | {ms(r['p50'])} | {ms(r['p90'])} | {ms(r['p99'])} "
          f"| {r['non2xx']} / {r['conn']}{' + %d broken' % r['broken'] if r.get('broken') else ''} | {delta_us(r['p50'], d and d['p50'])} | {delta_us(r['p99'], d and d['p99'])} "
          f"| {cpu} | {hwm} | {rss} |")
if streams:
    print("\nstream rows: p50/p90/p99 are the time to the first content chunk (TTFT); \"broken\" = streams")
    print("without [DONE], with an error event, unparsable or timed out. Detail of the stream phase:\n")
    print("| target (streams/s) | path | achieved (streams/s) | TTFT p50 ms | TTFT p99 ms | total p50 ms | total p99 ms "
          "| chunks/stream | chunks/s | tokens/s | errors (non-2xx / conn / no [DONE] / error event) "
          "| ΔTTFT p50 µs | ΔTTFT p99 µs | Δtotal p50 µs | Δtotal p99 µs | start lag p50 / p99 ms "
          "| TTFT from send p50 / p99 ms | Δ from send p50 / p99 µs | CPU µs/stream |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in streams:
        s = r["stream"]; e = s.get("errors", {}); t = s["total_ms"]; f = s["ttft_ms"]
        d = direct.get(("stream", r["target"])) if r["name"] != "direct" else None
        ds = d and d["stream"]
        dms = lambda a, b: "-" if a is None or b is None else f"{(a - b) * 1e3:+.0f}"
        fm = lambda v: "-" if v is None else f"{v:.3f}"
        cpu = "-" if r["cpu"] is None or not r["total"] else f"{r['cpu'] * 1e6 / r['total']:.1f}"
        print(f"| {r['target']} | {r['name']} | {r['rps']:.0f} | {fm(f['p50'])} | {fm(f['p99'])} | {fm(t['p50'])} | {fm(t['p99'])} "
              f"| {s.get('chunks_per_stream', 0):.1f} | {s.get('chunks_per_s', 0):.0f} | {s.get('tokens_per_s', 0):.0f} "
              f"| {e.get('non_2xx', 0)} / {e.get('connect', 0)} / {e.get('no_done', 0)} / {e.get('error_event', 0)}"
              + (f" (+{e.get('malformed', 0)} malformed, {e.get('timeout', 0)} timeouts)" if e.get('malformed') or e.get('timeout') else "")
              + f" | {dms(f['p50'], ds and ds['ttft_ms']['p50'])} | {dms(f['p99'], ds and ds['ttft_ms']['p99'])} "
              f"| {dms(t['p50'], ds and ds['total_ms']['p50'])} | {dms(t['p99'], ds and ds['total_ms']['p99'])} "
              f"| {fm(s['lag_ms']['p50'])} / {fm(s['lag_ms']['p99'])} "
              f"| {fm(s['ttft_from_send_ms']['p50'])} / {fm(s['ttft_from_send_ms']['p99'])} "
              f"| {dms(s['ttft_from_send_ms']['p50'], ds and ds['ttft_from_send_ms']['p50'])} / "
              f"{dms(s['ttft_from_send_ms']['p99'], ds and ds['ttft_from_send_ms']['p99'])} | {cpu} |")
    models = {f"{r['name']}/{r['target']}": r["stream"].get("models", {}) for r in streams}
    print("\nModel named by the first content chunk:", json.dumps(models))
    for r in streams:
        d = direct.get(("stream", r["target"]))
        if r["name"] == "bkvy" and r["target"] != "sat" and d and r["p99"] is not None and d["p99"] is not None:
            over = (r["p99"] - d["p99"]) * 1e6
            print(f"Budget, streaming at {r['target']}/s: ΔTTFT p99 {over:+.0f} µs (≤ 1,000 µs): {'pass' if over <= 1000 else 'FAIL'}"
                  + (f", {r['non2xx'] + r['conn'] + r['broken']} errors" if r['non2xx'] + r['conn'] + r['broken'] else ", 0 errors"))
errs = {f"{r['phase']}/{r['name']}/{r['target']}": r["errs"] for r in rows if r["errs"]}
if errs:
    print("\nConnection errors:", json.dumps(errs))
def paired(phase):
    # The paired saturation runs of a phase: mean throughput and CPU per request of the
    # variant ("bkvy") and of plain bkvy ("ref"), and the runs themselves.
    out = {}
    for name in ("bkvy", "ref"):
        rs = [r for r in rows if r["phase"] == phase and r["name"] == name and r["target"].startswith("sat-")]
        if not rs:
            return None
        cpu = [r["cpu"] * 1e6 / r["total"] for r in rs if r["cpu"] is not None and r["total"]]
        out[name] = dict(rps=sum(r["rps"] for r in rs) / len(rs), cpu=sum(cpu) / len(cpu) if cpu else None,
                         runs=" / ".join(f"{r['rps']:.0f}" for r in rs))
    return out
for phase, label in (("stats", "Statistics logging on (TRANSACTION_LOGGING + SUMMARY_STATS)"),
                     ("nolog", "Access log off (LOG_LEVEL=warn)")):
    p = paired(phase)
    if not p:
        continue
    v, ref = p["bkvy"], p["ref"]
    cpu = ""
    if v["cpu"] and ref["cpu"]:
        cpu = f"; CPU {v['cpu']:.1f} vs {ref['cpu']:.1f} µs/request ({(v['cpu'] / ref['cpu'] - 1) * 100:+.1f} %)"
    print(f"\n{label}, paired saturation runs: {v['rps']:.0f} vs {ref['rps']:.0f} req/s "
          f"({(v['rps'] / ref['rps'] - 1) * 100:+.1f} %){cpu} [runs: {v['runs']} vs {ref['runs']}]")
hop = os.path.join(rdir, "hop.tsv")
if os.path.exists(hop) and os.path.getsize(hop):
    # Every proxy row crosses between the cores twice per round trip where the direct row
    # crosses none: two cross-core round trips (less two same-core ones) are the layout's
    # share of Δp50, whatever the proxy.
    echo = {}
    for line in open(hop):
        layout, gap, n, p50, p90 = line.split()
        echo[(layout, round(1 / float(gap)))] = float(p50)
    base = {(r["name"], r["target"]): r for r in rows if r["phase"] == "base"}
    print("\nCross-core round trip (benches/hop.py: one-byte TCP echo, pausing 1/rate between round trips), "
          "and Δp50 less two of them:\n")
    print("| rate | echo across cores p50 µs | echo on one core p50 µs | layout's share of Δp50 µs "
          "| Δp50 less the layout's share µs (" + " / ".join(n for n in ("bkvy", "floor", "nginx")
                                                            if any(k[0] == n for k in base)) + ") |")
    print("|---|---|---|---|---|")
    for rate in sorted({k[1] for k in echo}):
        cross, same = echo.get(("cross", rate)), echo.get(("same", rate))
        if cross is None or same is None:
            continue
        share = 2 * (cross - same)
        d = base.get(("direct", str(rate)))
        rest = []
        for n in ("bkvy", "floor", "nginx"):
            r = base.get((n, str(rate)))
            if r and d and r["p50"] is not None and d["p50"] is not None:
                rest.append(f"{(r['p50'] - d['p50']) * 1e6 - share:+.0f}")
        print(f"| {rate} | {cross:.1f} | {same:.1f} | {share:.0f} | {' / '.join(rest) or '-'} |")
instr = os.path.join(rdir, "instr.tsv")
if os.path.exists(instr):
    per = {}
    for line in open(instr):
        name, n1, a, n2, b = line.split()
        if int(a) > 0 and int(b) > 0:
            per[name] = (int(b) - int(a)) / (int(n2) - int(n1))
    if per:
        print("\nInstructions per request (user space, all threads, callgrind; sequential requests, "
              "the difference of two runs so start-up and shut-down cancel out):\n")
        print("| target | instructions/request | vs floor |")
        print("|---|---|---|")
        for name, v in per.items():
            vs = f"{v / per['floor']:.2f}×" if per.get("floor") else "-"
            print(f"| {name} | {v:,.0f} | {vs} |")
        if per.get("bkvy") and per.get("bkvy-stats"):
            print(f"\nStatistics logging on, instructions: {(per['bkvy-stats'] / per['bkvy'] - 1) * 100:+.1f} % per request.")
        if per.get("bkvy") and per.get("bkvy-nolog"):
            print(f"Access log off, instructions: {(per['bkvy-nolog'] / per['bkvy'] - 1) * 100:+.1f} % per request.")
        for new, ref in (("bkvy", "bkvy-ref"), ("bkvy-v1", "bkvy-v1-ref")):
            if per.get(new) and per.get(ref):
                print(f"{new} against the reference binary: {(per[new] / per[ref] - 1) * 100:+.1f} % instructions per request.")
sf = os.path.join(rdir, "stats-files")
if os.path.exists(sf):
    n = int(open(sf).read().strip() or 0)
    print(f"Files written under LOG_DIR during the stats phase: {n}"
          + (" (TRANSACTION_LOGGING/SUMMARY_STATS not implemented in this build: the stats rows measure the plain path)" if n == 0 else ""))
def requests_by_model(metrics):
    out = {}
    pat = re.compile(r'^bkvy_requests_total\{([^}]*)\}\s+([0-9.e+]+)')
    for line in open(metrics):
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("provider") or "-") + "/" + (labels.get("model") or "-") + " " + labels.get("outcome", "")
        out[key] = out.get(key, 0) + float(m.group(2))
    return out
def upstream_errors(metrics):
    out = {}
    pat = re.compile(r'^bkvy_upstream_errors_total\{([^}]*)\}\s+([0-9.e+]+)')
    for line in open(metrics):
        m = pat.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            key = f"{labels.get('provider')}/{labels.get('model')} {labels.get('kind')}"
            out[key] = out.get(key, 0) + float(m.group(2))
    return out
for phase in ("base", "stream", "failover"):
    path = os.path.join(rdir, f"{phase}.metrics")
    if not os.path.exists(path):
        continue
    by = requests_by_model(path)
    total = sum(by.values()) or 1
    print(f"\nbkvy_requests_total by provider/model ({phase} phase):")
    for k, v in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"  {k:45} {v:10.0f}  {100 * v / total:6.2f} %")
    ue = upstream_errors(path)
    if ue:
        print(f"bkvy_upstream_errors_total ({phase} phase):")
        for k, v in sorted(ue.items(), key=lambda kv: -kv[1]):
            print(f"  {k:45} {v:10.0f}")
PY
log "raw results in $RESULTS_DIR"
