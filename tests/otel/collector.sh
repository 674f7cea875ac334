#!/usr/bin/env bash
# A real OpenTelemetry Collector for the tracing tests: built on first use with the
# collector's own builder from the Go module proxy (every component pinned to one
# release: the OTLP receiver, the file exporter and the no-op exporter), cached, and
# run on loopback with OTLP/HTTP in (JSON or protobuf) and either OTLP JSON lines out
# to a file (tests) or nothing out (--exporter nop: benchmarks, a collector that
# receives and discards, as a local agent that forwards costs). Invariant: everything a running
# collector owns lives in its state folder; `stop` ends it by pid and removes it.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tests/otel/collector.sh [options] COMMAND

commands:
  build          build the collector (once; cached) and print its path
  start          start it, wait until its OTLP/HTTP port answers; prints the endpoint
                 (http://HOST:PORT); spans go to STATE/traces.jsonl
  stop           kill it and remove the state folder
  pause|resume   SIGSTOP / SIGCONT it (a collector that is slow to answer)
  endpoint       print the endpoint of a started collector
  file           print the path of the file it writes (one OTLP JSON object a line)

options (each also an environment variable):
  --state DIR      UKKO_OTELCOL_STATE  its folder (default $TMPDIR/ukko-otelcol-$UID)
  --host ADDR      UKKO_OTELCOL_HOST   address to listen on (default 127.0.9.2)
  --port PORT      UKKO_OTELCOL_PORT   OTLP/HTTP port (default: a free one)
  --exporter KIND  UKKO_OTELCOL_EXPORTER  file (default: spans to STATE/traces.jsonl)
                   or nop (received, decoded and discarded)
  --owner PID      stop the collector when process PID exits
  --timeout SEC    UKKO_OTELCOL_START_TIMEOUT  deadline of build+start (default 60
                   for start; the first build may take 20 minutes on 2 cores)
  UKKO_OTELCOL_CACHE    where the built collector is kept ($XDG_CACHE_HOME/ukko/otelcol)
  UKKO_OTELCOL_VERSION  the collector release of every component (default 0.161.0)

exit status: 0 done, 1 failed, 2 usage, 3 no collector can be built here (no Go, or
the module proxy cannot be reached): stderr then starts "no collector:".
EOF
}

state=${UKKO_OTELCOL_STATE:-${TMPDIR:-/tmp}/ukko-otelcol-$(id -u)}
host=${UKKO_OTELCOL_HOST:-127.0.9.2}
port=${UKKO_OTELCOL_PORT:-}
timeout=${UKKO_OTELCOL_START_TIMEOUT:-60}
version=${UKKO_OTELCOL_VERSION:-0.161.0}
cache=${UKKO_OTELCOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ukko/otelcol}
exporter=${UKKO_OTELCOL_EXPORTER:-file}
owner=""
cmd=""

die() { echo "collector.sh: $*" >&2; exit 1; }
unavailable() { echo "no collector: $*" >&2; exit 3; }

while (($#)); do
  case "$1" in
    --state) state=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    --exporter) exporter=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) [[ -z $cmd ]] || { usage >&2; exit 2; }; cmd=$1; shift ;;
  esac
done
[[ -n $cmd ]] || { usage >&2; exit 2; }
case "$exporter" in
  file|nop) ;;
  *) echo "collector.sh: --exporter $exporter: allowed: file, nop" >&2; exit 2 ;;
esac

# The binary's name says its components: a cache built with fewer is not reused.
bin="$cache/$version/otelcol-ukko-file-nop"

alive() { kill -0 "$1" 2>/dev/null; }

build() {
  [[ -x $bin ]] && { echo "$bin"; return 0; }
  command -v go >/dev/null 2>&1 || unavailable "no Go toolchain (go) on PATH"
  mkdir -p "$cache/$version"
  # One builder at a time per cache: a second caller waits for the first.
  exec 9>"$cache/$version/.lock"
  flock 9
  [[ -x $bin ]] && { echo "$bin"; return 0; }
  local work="$cache/$version/work"
  rm -rf "$work"; mkdir -p "$work/gobin"
  if ! GOBIN="$work/gobin" nice -n 15 go install \
      "go.opentelemetry.io/collector/cmd/builder@v$version" >"$work/builder.log" 2>&1; then
    tail -5 "$work/builder.log" >&2
    unavailable "go install of the collector builder v$version failed (log: $work/builder.log)"
  fi
  cat >"$work/manifest.yaml" <<EOF
dist:
  name: otelcol-ukko
  description: OpenTelemetry Collector for ukko's tracing tests (OTLP in, JSON file or nothing out)
  output_path: $work/dist
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$version
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v$version
  - gomod: go.opentelemetry.io/collector/exporter/nopexporter v$version
EOF
  if ! GOFLAGS=-buildvcs=false nice -n 15 "$work/gobin/builder" \
      --config "$work/manifest.yaml" >"$work/build.log" 2>&1; then
    tail -20 "$work/build.log" >&2
    die "the collector build failed (log: $work/build.log)"
  fi
  mv "$work/dist/otelcol-ukko" "$bin"
  rm -rf "$work/dist"
  echo "$bin"
}

free_port() {
  python3 - "$host" <<'EOF'
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])
s.close()
EOF
}

answers() {
  python3 - "$host" "$1" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()
except OSError:
    sys.exit(1)
EOF
}

watchdog() {
  # Ends the collector when its owner is gone, so a crashed test leaves nothing.
  while alive "$1"; do sleep 1; done
  "$2" --state "$3" stop
}

start() {
  build >/dev/null
  if [[ -f $state/pid ]] && alive "$(cat "$state/pid")"; then
    die "a collector already runs from $state (pid $(cat "$state/pid")); stop it first"
  fi
  rm -rf "$state"; mkdir -p "$state"
  [[ -n $port ]] || port=$(free_port)
  cat >"$state/config.yaml" <<EOF
receivers:
  otlp:
    protocols:
      http:
        endpoint: $host:$port
exporters:
  file:
    path: $state/traces.jsonl
    format: json
    flush_interval: 100ms
  nop:
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [$exporter]
EOF
  "$bin" --config "$state/config.yaml" </dev/null >"$state/collector.log" 2>&1 &
  echo $! >"$state/pid"
  echo "http://$host:$port" >"$state/endpoint"
  local deadline=$((SECONDS + timeout))
  until answers "$port"; do
    alive "$(cat "$state/pid")" || { tail -20 "$state/collector.log" >&2; die "the collector exited at start (log above)"; }
    ((SECONDS < deadline)) || die "the collector did not answer on $host:$port within ${timeout}s"
    sleep 0.2
  done
  if [[ -n $owner ]]; then
    alive "$owner" || die "--owner $owner is not a running process"
    watchdog "$owner" "${BASH_SOURCE[0]}" "$state" </dev/null >/dev/null 2>&1 &
    echo $! >"$state/watchdog.pid"
  fi
  cat "$state/endpoint"
}

stop() {
  local p
  if [[ -f $state/pid ]]; then
    p=$(cat "$state/pid")
    if alive "$p"; then
      kill -CONT "$p" 2>/dev/null || true
      kill "$p" 2>/dev/null || true
      for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
      alive "$p" && kill -9 "$p" 2>/dev/null || true
    fi
  fi
  if [[ -f $state/watchdog.pid ]]; then
    p=$(cat "$state/watchdog.pid")
    [[ $p == "$$" || $p == "$PPID" ]] || kill "$p" 2>/dev/null || true
  fi
  rm -rf "$state"
}

case "$cmd" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  pause) kill -STOP "$(cat "$state/pid")" ;;
  resume) kill -CONT "$(cat "$state/pid")" ;;
  endpoint) cat "$state/endpoint" ;;
  file) echo "$state/traces.jsonl" ;;
  *) usage >&2; exit 2 ;;
esac
