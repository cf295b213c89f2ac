#!/usr/bin/env bash
# Benchmarks abridge against the mock upstream, all on 127.0.0.1:
#   1. loadtest -> mock directly (OpenAI /v1/chat/completions, the baseline)
#   2. loadtest -> floor_proxy -> mock: what merely relaying costs (the floor)
#   3. loadtest -> abridge -> mock
# each non-streaming and streaming, then prints one row per run and the
# gateway's cost relative to the direct run and to the floor.
#
#   QPS=5000 STREAM_QPS=1000 DURATION=20s WARMUP=3s examples/bench.sh
#
# BASELINE=path/to/an/older/abridge adds the rows `baseline` and
# `baseline-stream`: that binary, on its own database and port, under the same
# load in the same sitting, so a change's CPU cost is a ratio from one run.
#
# Every process it starts is killed on exit; every run is bounded by timeout.
set -euo pipefail

QPS=${QPS:-5000}
# Streams carry ten chunks each, so they run at a lower rate by default.
STREAM_QPS=${STREAM_QPS:-1000}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
MOCK_PORT=${MOCK_PORT:-9100}
FLOOR_PORT=${FLOOR_PORT:-9200}
GW_PORT=${GW_PORT:-18080}
BASE_PORT=${BASE_PORT:-18081}
BASELINE=${BASELINE:-}
HOST=127.0.0.1 # never anything else: benchmarks stay on loopback

cd "$(dirname "$0")/.."
TMP=$(mktemp -d "${TMPDIR:-/tmp}/abridge-bench.XXXXXX")
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Seconds in a humantime-style duration ("20s", "2m", "1500ms").
seconds() {
  python3 -c '
import re, sys
total = 0.0
for n, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?", sys.argv[1]):
    total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "": 1}[unit]
print(int(total + 0.999))' "$1"
}
# Each run may take its warmup and duration plus a minute of slack.
BOUND=$(($(seconds "$WARMUP") + $(seconds "$DURATION") + 60))

wait_for() { # URL, what, seconds, PID
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    # A process that exited (its port taken, say) must not be mistaken for
    # whatever else answers on that port.
    kill -0 "$4" 2>/dev/null || die "$2 exited (logs in $TMP)"
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not answer $1 within $3 s (logs in $TMP)"
}

ulimit -n 65536 2>/dev/null || true

say "building (release)"
cargo build --release --bin abridge --example mock_upstream --example floor_proxy >&2
BIN=target/release/abridge
MOCK=target/release/examples/mock_upstream
FLOOR=target/release/examples/floor_proxy

say "starting the mock upstream on $HOST:$MOCK_PORT"
"$MOCK" --listen "$HOST:$MOCK_PORT" --latency 0ms --stream-chunks 10 --chunk-interval 1ms \
  >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_for "http://$HOST:$MOCK_PORT/health" "the mock" 10 "$MOCK_PID"

say "starting the floor proxy on $HOST:$FLOOR_PORT"
"$FLOOR" --listen "$HOST:$FLOOR_PORT" --upstream "http://$HOST:$MOCK_PORT" >"$TMP/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_for "http://$HOST:$FLOOR_PORT/health" "the floor proxy" 10 "$FLOOR_PID"

cat >"$TMP/providers.toml" <<TOML
[[providers]]
name = "mock"
api_format = "openai"
base_url = "http://$HOST:$MOCK_PORT/v1"
api_key = "x"
models = { big = ["mock-big"], middle = ["mock-mid"], small = ["mock-small"] }
TOML
cat >"$TMP/openai.json" <<'JSON'
{"model":"mock-small","max_tokens":64,"messages":[{"role":"user","content":"Reply with one short sentence."}]}
JSON
cat >"$TMP/openai-stream.json" <<'JSON'
{"model":"mock-small","max_tokens":64,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Reply with one short sentence."}]}
JSON

export ABRIDGE_LISTEN="$HOST:$GW_PORT"
export ABRIDGE_DATABASE="sqlite://$TMP/bench.db"
export ABRIDGE_PROVIDERS="$TMP/providers.toml"
# Keep as many idle upstream connections as may be open at once: with the
# default 50, bursts above 50 in flight close and reopen connections.
export HTTP_MAX_KEEPALIVE_CONNECTIONS=200

say "creating a client key"
KEY=$(timeout 60 "$BIN" keys create --name bench --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])') ||
  die "abridge keys create --name bench --json failed"

say "starting abridge on $HOST:$GW_PORT"
"$BIN" serve >"$TMP/abridge.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_for "http://$HOST:$GW_PORT/ready" "abridge" 30 "$GW_PID"

if [[ -n $BASELINE ]]; then
  [[ -x $BASELINE ]] || die "BASELINE=$BASELINE is not an executable"
  say "starting the baseline $BASELINE on $HOST:$BASE_PORT"
  BASE_KEY=$(ABRIDGE_DATABASE="sqlite://$TMP/baseline.db" timeout 60 "$BASELINE" keys create --name bench --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])') ||
    die "$BASELINE keys create --name bench --json failed"
  ABRIDGE_DATABASE="sqlite://$TMP/baseline.db" ABRIDGE_LISTEN="$HOST:$BASE_PORT" \
    "$BASELINE" serve >"$TMP/baseline.log" 2>&1 &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
  wait_for "http://$HOST:$BASE_PORT/ready" "the baseline" 30 "$BASE_PID"
fi

run() { # NAME, loadtest flags... (RUN_QPS overrides QPS for one run)
  local name=$1
  local qps=${RUN_QPS:-$QPS}
  shift
  say "run $name: $qps req/s for $DURATION (+$WARMUP warmup)"
  local rc=0
  timeout --kill-after=10s "$BOUND" "$BIN" loadtest --qps "$qps" --duration "$DURATION" \
    --warmup "$WARMUP" --json "$@" >"$TMP/$name.json" 2>"$TMP/$name.err" || rc=$?
  # 0 = done, 1 = an SLO failed (none are set here); anything else is a failure.
  if ((rc > 1)); then
    cat "$TMP/$name.err" >&2
    die "run $name failed (exit $rc)"
  fi
  grep -v '^loadtest:' "$TMP/$name.err" >&2 || true
}

run direct --endpoint raw --url "http://$HOST:$MOCK_PORT/v1/chat/completions" \
  --body "$TMP/openai.json" --watch-pid "$MOCK_PID"
RUN_QPS=$STREAM_QPS run direct-stream --endpoint raw --stream \
  --url "http://$HOST:$MOCK_PORT/v1/chat/completions" --body "$TMP/openai-stream.json" --watch-pid "$MOCK_PID"
run floor --endpoint raw --url "http://$HOST:$FLOOR_PORT/v1/chat/completions" \
  --body "$TMP/openai.json" --watch-pid "$FLOOR_PID"
RUN_QPS=$STREAM_QPS run floor-stream --endpoint raw --stream \
  --url "http://$HOST:$FLOOR_PORT/v1/chat/completions" --body "$TMP/openai-stream.json" --watch-pid "$FLOOR_PID"
run gateway --url "http://$HOST:$GW_PORT" --key "$KEY" --model claude-3-5-haiku-latest \
  --watch-pid "$GW_PID"
RUN_QPS=$STREAM_QPS run gateway-stream --url "http://$HOST:$GW_PORT" --key "$KEY" --model claude-3-5-haiku-latest \
  --stream --watch-pid "$GW_PID"
if [[ -n $BASELINE ]]; then
  run baseline --url "http://$HOST:$BASE_PORT" --key "$BASE_KEY" --model claude-3-5-haiku-latest \
    --watch-pid "$BASE_PID"
  RUN_QPS=$STREAM_QPS run baseline-stream --url "http://$HOST:$BASE_PORT" --key "$BASE_KEY" \
    --model claude-3-5-haiku-latest --stream --watch-pid "$BASE_PID"
fi

python3 - "$TMP" <<'PY'
import json, os, sys
tmp = sys.argv[1]
names = ("direct", "direct-stream", "floor", "floor-stream", "gateway", "gateway-stream",
         "baseline", "baseline-stream")
runs = {n: json.load(open(f"{tmp}/{n}.json")) for n in names if os.path.exists(f"{tmp}/{n}.json")}

def pct(r, key, field):
    return (r.get(key) or {}).get(field, float("nan"))

print()
print(f"{'run':<16}{'req/s':>10}{'ok %':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
      f"{'lag p99':>9}{'ttfb p50':>10}{'srv µs/req':>11}{'srv MB':>8}")
for name, r in runs.items():
    q, s = r["requests"], r.get("server") or {}
    print(f"{name:<16}{q['achieved_qps']:>10.0f}{q['success_pct']:>9.2f}"
          f"{pct(r, 'latency_ms', 'p50'):>9.3f}{pct(r, 'latency_ms', 'p99'):>9.3f}"
          f"{pct(r, 'latency_ms', 'p99_9'):>10.3f}{(r['lag']['ms'] or {}).get('p99', float('nan')):>9.3f}"
          f"{pct(r, 'ttfb_ms', 'p50'):>10.3f}{s.get('cpu_us_per_request', float('nan')):>11.1f}"
          f"{s.get('peak_rss_mb', float('nan')):>8.1f}")

def cpu(name):
    return (runs[name].get("server") or {}).get("cpu_us_per_request", float("nan"))

print()
print(f"{'compared':<32}{'p50 ×':>9}{'p99 ×':>9}{'+p50 ms':>10}{'+p99 ms':>10}{'cpu ×':>8}")
for name, base in (("floor", "direct"), ("gateway", "direct"), ("gateway", "floor"),
                   ("floor-stream", "direct-stream"), ("gateway-stream", "direct-stream"),
                   ("gateway-stream", "floor-stream"), ("gateway", "baseline"),
                   ("gateway-stream", "baseline-stream")):
    if name not in runs or base not in runs:
        continue
    lat, ref = runs[name]["latency_ms"], runs[base]["latency_ms"]
    label = f"{name} vs {base}"
    if not lat or not ref:
        print(f"{label:<32}  no latency measured")
        continue
    print(f"{label:<32}{lat['p50'] / ref['p50']:>9.2f}{lat['p99'] / ref['p99']:>9.2f}"
          f"{lat['p50'] - ref['p50']:>10.3f}{lat['p99'] - ref['p99']:>10.3f}{cpu(name) / cpu(base):>8.2f}")
for name, r in runs.items():
    if r["lag"]["behind"]:
        print(f"note: the generator fell behind in {name} (p99 lag {r['lag']['ms']['p99']} ms);"
              " its latencies include that")
PY
