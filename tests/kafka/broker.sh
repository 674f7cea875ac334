#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, broker+controller in one JVM) on loopback for
# tests and people: assembles the jars from Maven on first use, runs 1 or N nodes
# from a state folder (pid, ports, data, logs), and breaks them on demand.
# Invariant: everything a rig owns lives in its state folder; `stop` ends its
# processes by pid and removes the folder. See tests/kafka/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tests/kafka/broker.sh [options] COMMAND [args]

commands:
  start              format storage, start the node(s), wait until they answer
                     metadata; prints the bootstrap servers (host:port,...)
  stop               kill the node(s) and remove the state folder (data included)
  status             one line per node: running, paused or down; exit 1 unless all run
  bootstrap          print the bootstrap servers of a started rig
  topic NAME PARTS [RF]
                     create topic NAME with PARTS partitions (replication factor RF,
                     default: the number of brokers); an existing one is left as is
  leader TOPIC [PARTITION]
                     print the node id that leads the partition (default 0)
  pause [NODE]       SIGSTOP a node (default: node 1)
  resume [NODE]      SIGCONT it
  kill [NODE]        SIGKILL it; its data and port are kept for `restart`
  term [NODE]        SIGTERM it (controlled shutdown) and wait for its exit
  restart [NODE]     start it again on the same data and port (killing it first if it
                     still runs) and wait until the rig answers metadata again
  produce TOPIC      produce stdin's lines "KEY<TAB>VALUE" with Kafka's own Java
                     producer (its default partitioner: murmur2 of the key)
  java CLASS [ARGS]  run a main class of the jars (a Kafka tool, e.g.
                     kafka.tools.DumpLogSegments) in a small JVM
  fetch              only assemble the jars; prints their folder
  log [NODE]         print the path of a node's log

options (each also an environment variable):
  --state DIR        UKKO_KAFKA_STATE  the rig's folder (default $TMPDIR/ukko-kafka-$UID);
                     one folder per rig, so rigs run side by side
  --brokers N        UKKO_KAFKA_BROKERS  nodes, each broker+controller (default 1);
                     N > 1 gives replication factor N and min.insync.replicas N-1
  --host ADDR        UKKO_KAFKA_HOST  loopback address to listen on (default 127.0.4.1)
  --version V        UKKO_KAFKA_VERSION  Kafka release, 4.1 or later (default 4.1.1)
  --heap SIZE        UKKO_KAFKA_HEAP  -Xmx of each JVM (default 384m)
  --owner PID        stop the rig when process PID exits (test fixtures pass their own)
  --prop KEY=VALUE   extra server.properties line (repeatable)
  --timeout SECONDS  UKKO_KAFKA_START_TIMEOUT  deadline of start/restart (default 90)
  UKKO_KAFKA_CACHE   where assembled jars are kept (default $XDG_CACHE_HOME/ukko-kafka)
  UKKO_KAFKA_JAVA_OPTS  extra JVM options for the brokers
  UKKO_KAFKA_MVN     the Maven command (default mvn)

exit status: 0 done, 1 failed, 2 usage, 3 no real Kafka can run here (no Java 17,
Maven, kcat, or the jars cannot be fetched): stderr then starts "no real Kafka:".
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${UKKO_KAFKA_STATE:-${TMPDIR:-/tmp}/ukko-kafka-$(id -u)}
brokers=${UKKO_KAFKA_BROKERS:-1}
host=${UKKO_KAFKA_HOST:-127.0.4.1}
version=${UKKO_KAFKA_VERSION:-4.1.1}
heap=${UKKO_KAFKA_HEAP:-384m}
timeout=${UKKO_KAFKA_START_TIMEOUT:-90}
cache=${UKKO_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ukko-kafka}
owner=""
props=()
cmd=""
args=()

die() { echo "broker.sh: $*" >&2; exit 1; }
unavailable() { echo "no real Kafka: $*" >&2; exit 3; }

while (($#)); do
  case "$1" in
    --state) state=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --heap) heap=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    --prop) props+=("$2"); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "broker.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) if [[ -z $cmd ]]; then cmd=$1; else args+=("$1"); fi; shift
       # What follows `java CLASS` is that tool's, options included.
       if [[ $cmd == java ]]; then args+=("$@"); break; fi ;;
  esac
done
[[ -n $cmd ]] || { usage >&2; exit 2; }
[[ $brokers =~ ^[1-9]$ ]] || { echo "broker.sh: --brokers $brokers: give 1 to 9" >&2; exit 2; }
case "$version" in
  4.0.0) echo "broker.sh: --version 4.0.0 is not supported: take 4.1 or later" >&2; exit 2 ;;
  [0-3].*|4.0.*) echo "broker.sh: --version $version: take 4.1 or later (KRaft, Java 17)" >&2; exit 2 ;;
esac

java=${JAVA_HOME:+$JAVA_HOME/bin/}java
mvn=${UKKO_KAFKA_MVN:-mvn}
libs=$cache/kafka-$version/libs

# ---- prerequisites and jars ----------------------------------------------------

check_java() {
  command -v "$java" >/dev/null 2>&1 ||
    unavailable "no java on PATH: install a Java 17 runtime (scripts/install-deps.sh)"
  local v
  v=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ -n $v && $v -ge 17 ]] ||
    unavailable "$java is Java ${v:-?}; Kafka $version needs 17 or later (scripts/install-deps.sh)"
}

check_kcat() {
  command -v kcat >/dev/null 2>&1 ||
    unavailable "kcat is not installed; it checks that the broker answers (scripts/install-deps.sh)"
}

# Copies the runtime closure into $libs once; later runs use it as it is, and a
# lost folder is rebuilt from ~/.m2 without the network (-o) before trying online.
fetch_jars() {
  [[ -f $libs/.complete ]] && return 0
  mkdir -p "$cache"
  # One rig assembles at a time; the others wait and find the folder done.
  exec {lock}>"$cache/.lock"
  flock "$lock"
  if [[ -f $libs/.complete ]]; then exec {lock}>&-; return 0; fi
  command -v "$mvn" >/dev/null 2>&1 ||
    unavailable "Maven (mvn) is not installed and $libs holds no jars (scripts/install-deps.sh)"
  local tmp="$libs.tmp.$$" log="$cache/mvn-$version.log"
  mkdir -p "$cache"
  rm -rf "$tmp"
  local goal=(-B -q -f "$here/pom.xml" -Dkafka.version="$version"
              dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp")
  echo "broker.sh: assembling Kafka $version from Maven into $libs" >&2
  if ! "$mvn" -o "${goal[@]}" >"$log" 2>&1 && ! "$mvn" "${goal[@]}" >"$log" 2>&1; then
    rm -rf "$tmp"
    local why
    why=$(grep -m1 -E '\[ERROR\]' "$log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300)
    unavailable "Maven could not fetch org.apache.kafka:kafka_2.13:$version: ${why:-see $log}"
  fi
  ls "$tmp"/kafka_2.13-"$version".jar >/dev/null 2>&1 ||
    { rm -rf "$tmp"; die "Maven ran but $tmp has no kafka_2.13-$version.jar (see $log)"; }
  cat >"$tmp/log4j2-tools.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
  cat >"$tmp/log4j2-broker.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  touch "$tmp/.complete"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  exec {lock}>&-
}

# Runs one of Kafka's command-line tools by its main class, in a small JVM.
tool() {
  local main=$1; shift
  "$java" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$libs/log4j2-tools.properties" \
    -cp "$libs/*" "$main" "$@"
}

# ---- state ----------------------------------------------------------------------

node_dir() { echo "$state/node-$1"; }
node_pid() { cat "$(node_dir "$1")/pid" 2>/dev/null || true; }
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }
# The pid file names our JVM only while that process still runs kafka.Kafka with
# this node's properties (a pid reused by another process is never signalled).
node_alive() {
  local pid; pid=$(node_pid "$1")
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF "$(node_dir "$1")/server.properties"
}
proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }

load_rig() {
  [[ -f $state/rig.env ]] || die "no rig in $state: run 'broker.sh --state $state start' first"
  # shellcheck disable=SC1091
  source "$state/rig.env"
}

node_arg() {
  local n=${args[0]:-1}
  [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le $brokers ]] ||
    die "node '$n' is not one of 1..$brokers in $state"
  echo "$n"
}

free_ports() {  # prints $1 ports free on $host, all picked while all are held
  python3 - "$host" "$1" <<'EOF'
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
held = []
try:
    for _ in range(n):
        s = socket.socket()
        s.bind((host, 0))
        held.append(s)
except OSError as e:
    sys.exit(f"broker.sh: cannot bind {host}: {e} (is it a loopback address?)")
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

write_props() {  # node id, data dir -> server.properties
  local id=$1 dir; dir=$(node_dir "$1")
  local voters="" i
  for ((i = 1; i <= brokers; i++)); do
    voters+="${voters:+,}$i@$host:${cports[$i]}"
  done
  local rf=$brokers isr=$((brokers > 1 ? brokers - 1 : 1))
  {
    echo "# generated by tests/kafka/broker.sh"
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    echo "controller.quorum.voters=$voters"
    echo "listeners=PLAINTEXT://$host:${ports[$id]},CONTROLLER://$host:${cports[$id]}"
    echo "advertised.listeners=PLAINTEXT://$host:${ports[$id]}"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "log.dirs=$dir/data"
    echo "num.partitions=1"
    echo "default.replication.factor=$rf"
    echo "min.insync.replicas=$isr"
    echo "offsets.topic.replication.factor=$rf"
    echo "offsets.topic.num.partitions=10"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$isr"
    echo "transaction.state.log.num.partitions=10"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$isr"
    echo "group.initial.rebalance.delay.ms=0"
    echo "num.network.threads=2"
    echo "num.io.threads=4"
    echo "num.recovery.threads.per.data.dir=1"
    echo "log.segment.bytes=67108864"
    echo "log.retention.check.interval.ms=300000"
    local p
    for p in "${props[@]}"; do echo "$p"; done
  } >"$dir/server.properties"
}

launch() {  # node id: start its JVM in its own session, output to its log
  local id=$1 dir; dir=$(node_dir "$1")
  # shellcheck disable=SC2086
  setsid "$java" -Xmx"$heap" -Xms32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Xshare:auto -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$libs/log4j2-broker.properties" \
    ${UKKO_KAFKA_JAVA_OPTS:-} \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/broker.log" 2>&1 &
  local pid=$! deadline=$((SECONDS + 10))
  echo "$pid" >"$dir/pid"
  # Until the child has exec'd java, its command line is still this script's.
  while alive "$pid" && ! node_alive "$id" && ((SECONDS < deadline)); do sleep 0.01; done
}

bootstrap_list() {
  local b="" i
  for ((i = 1; i <= brokers; i++)); do b+="${b:+,}$host:${ports[$i]}"; done
  echo "$b"
}

# Polls until kcat sees $1 brokers in the metadata, failing early when a node that
# should run has died, with the end of its log.
wait_metadata() {
  local want=$1 deadline=$((SECONDS + timeout)) out i
  while :; do
    for ((i = 1; i <= brokers; i++)); do
      if [[ ${expect_up[$i]:-1} == 1 ]] && ! node_alive "$i"; then
        echo "broker.sh: node $i exited while starting; end of $(node_dir "$i")/broker.log:" >&2
        tail -n 25 "$(node_dir "$i")/broker.log" >&2 || true
        return 1
      fi
    done
    out=$(kcat -b "$(bootstrap_list)" -L -m 2 2>/dev/null || true)
    if [[ $(grep -cE '^ +broker [0-9]+ at ' <<<"$out") -ge $want ]]; then
      printf 'broker.sh: %d broker(s) answer metadata %.1fs after launch\n' "$want" \
        "$(bc <<<"${EPOCHREALTIME} - ${launched_at:-$EPOCHREALTIME}")" >&2
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "broker.sh: no metadata with $want broker(s) from $(bootstrap_list) after ${timeout}s;" \
           "logs in $state/node-*/broker.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

start_watchdog() {
  [[ -n $owner ]] || return 0
  alive "$owner" || die "--owner $owner is not a running process"
  # Its own session, so `stop` can end it (and its tail) by process group.
  UKKO_KAFKA_WATCHDOG=1 setsid bash -c \
    'tail --pid="$1" -f /dev/null; exec "$2" --state "$3" stop >/dev/null 2>&1' \
    watchdog "$owner" "$here/broker.sh" "$state" </dev/null >/dev/null 2>&1 &
  echo $! >"$state/watchdog.pid"
}

# ---- commands --------------------------------------------------------------------

cmd_start() {
  check_java; check_kcat
  if [[ -f $state/rig.env ]]; then
    load_rig
    local i
    for ((i = 1; i <= brokers; i++)); do
      node_alive "$i" && die "a rig already runs in $state ($(bootstrap_list)): 'broker.sh --state $state stop' first"
    done
    rm -rf "$state"  # a dead rig's leftovers
  fi
  fetch_jars
  mkdir -p "$state"
  local picked i
  picked=($(free_ports $((2 * brokers))))
  ports=() cports=()
  for ((i = 1; i <= brokers; i++)); do
    ports[$i]=${picked[$((2 * i - 2))]}
    cports[$i]=${picked[$((2 * i - 1))]}
  done
  local cid
  cid=$(python3 -c 'import base64,os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"): print(u); break')
  {
    echo "brokers=$brokers"
    echo "host=$host"
    echo "version=$version"
    echo "cache=$cache"
    echo "heap=$heap"
    echo "cluster_id=$cid"
    echo "ports=(${ports[*]:+x ${ports[*]}})"
    echo "cports=(${cports[*]:+x ${cports[*]}})"
  } >"$state/rig.env"
  # ports[0] is a placeholder so that node i is ports[i].
  for ((i = 1; i <= brokers; i++)); do
    mkdir -p "$(node_dir "$i")/data"
    write_props "$i"
    tool kafka.tools.StorageTool format -t "$cid" -c "$(node_dir "$i")/server.properties" \
      >"$(node_dir "$i")/format.log" 2>&1 ||
      { cat "$(node_dir "$i")/format.log" >&2; die "formatting node $i's storage failed"; }
  done
  launched_at=$EPOCHREALTIME
  for ((i = 1; i <= brokers; i++)); do launch "$i"; done
  start_watchdog
  if ! wait_metadata "$brokers"; then
    cmd_stop_keep_logs
    # A port picked free may be taken before the JVM binds it: pick again.
    if grep -qs "Address already in use" "$state"/node-*/broker.log && ((${attempt:-1} < 3)); then
      echo "broker.sh: a picked port was taken meanwhile; starting again on others" >&2
      attempt=$((${attempt:-1} + 1))
      rm -rf "$state"
      cmd_start
      return
    fi
    return 1
  fi
  bootstrap_list
}

# A failed start leaves its logs for a person to read, its processes ended.
cmd_stop_keep_logs() {
  local i
  for ((i = 1; i <= brokers; i++)); do
    node_alive "$i" && kill -KILL "$(node_pid "$i")" 2>/dev/null || true
  done
  stop_watchdog
  echo "broker.sh: processes ended; logs kept in $state (remove with 'broker.sh --state $state stop')" >&2
}

stop_watchdog() {
  [[ -n ${UKKO_KAFKA_WATCHDOG:-} ]] && return 0
  local w; w=$(cat "$state/watchdog.pid" 2>/dev/null || true)
  if alive "$w"; then kill -TERM -- "-$w" 2>/dev/null || true; fi
  rm -f "$state/watchdog.pid"
}

cmd_stop() {
  [[ -d $state ]] || return 0
  [[ -f $state/rig.env ]] && source "$state/rig.env"
  local i pid
  for ((i = 1; i <= brokers; i++)); do
    if node_alive "$i"; then
      pid=$(node_pid "$i")
      kill -KILL "$pid" 2>/dev/null || true  # data goes too: no need to shut down cleanly
    fi
  done
  for ((i = 1; i <= brokers; i++)); do
    pid=$(node_pid "$i")
    while alive "$pid" && [[ $(proc_state "$pid") != Z ]]; do sleep 0.05; done
  done
  stop_watchdog
  rm -rf "$state"
}

cmd_status() {
  load_rig
  local i pid rc=0 st
  for ((i = 1; i <= brokers; i++)); do
    pid=$(node_pid "$i")
    if node_alive "$i"; then
      [[ $(proc_state "$pid") == T ]] && st=paused || st=running
    else
      st=down; rc=1
    fi
    [[ $st == paused ]] && rc=1
    echo "node $i $st pid ${pid:-none} $host:${ports[$i]} controller $host:${cports[$i]}"
  done
  return $rc
}

cmd_signal() {  # signal name, verb
  load_rig
  local n; n=$(node_arg)
  node_alive "$n" || die "node $n in $state is not running (pid $(node_pid "$n")); 'restart $n' starts it"
  kill -"$1" "$(node_pid "$n")"
  if [[ $1 == KILL ]]; then
    local pid; pid=$(node_pid "$n")
    while alive "$pid" && [[ $(proc_state "$pid") != Z ]]; do sleep 0.05; done
  fi
}

cmd_term() {
  load_rig
  local n pid deadline=$((SECONDS + 60)); n=$(node_arg); pid=$(node_pid "$n")
  node_alive "$n" || die "node $n in $state is not running"
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid"
  while alive "$pid" && [[ $(proc_state "$pid") != Z ]]; do
    ((SECONDS < deadline)) || die "node $n (pid $pid) still runs 60s after SIGTERM"
    sleep 0.1
  done
}

cmd_restart() {
  check_java; check_kcat
  load_rig
  local n i pid; n=$(node_arg)
  if node_alive "$n"; then
    pid=$(node_pid "$n")
    kill -KILL "$pid"
    while alive "$pid" && [[ $(proc_state "$pid") != Z ]]; do sleep 0.05; done
  fi
  fetch_jars
  echo "# restarted $(date -Is)" >>"$(node_dir "$n")/broker.log"
  launched_at=$EPOCHREALTIME
  launch "$n"
  # Wait for every node that runs now (a paused or killed peer is not counted).
  local want=0
  expect_up=()
  for ((i = 1; i <= brokers; i++)); do
    if node_alive "$i" && [[ $(proc_state "$(node_pid "$i")") != T ]]; then
      want=$((want + 1)); expect_up[$i]=1
    else
      expect_up[$i]=0
    fi
  done
  expect_up[$n]=1
  wait_metadata "$want" || return 1
  bootstrap_list
}

cmd_topic() {
  load_rig
  local name=${args[0]:-} parts=${args[1]:-} rf=${args[2]:-$brokers}
  [[ -n $name && $parts =~ ^[0-9]+$ && $rf =~ ^[0-9]+$ ]] ||
    { echo "broker.sh: usage: topic NAME PARTITIONS [REPLICATION-FACTOR]" >&2; exit 2; }
  check_java; fetch_jars
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_list)" --create \
    --if-not-exists --topic "$name" --partitions "$parts" --replication-factor "$rf" >/dev/null ||
    die "creating topic $name ($parts partitions, replication $rf) on $(bootstrap_list) failed"
  # Wait until every partition has a leader in the metadata, so a client that
  # starts next finds it whole.
  local deadline=$((SECONDS + timeout)) out
  while :; do
    out=$(kcat -b "$(bootstrap_list)" -L -t "$name" -m 2 2>/dev/null || true)
    if [[ $(grep -cE '^ +partition [0-9]+, leader [0-9]+,' <<<"$out") -ge $parts ]]; then
      return 0
    fi
    ((SECONDS < deadline)) || die "topic $name: not every one of its $parts partitions has a leader after ${timeout}s"
    sleep 0.2
  done
}

cmd_leader() {
  load_rig
  check_kcat
  local topic=${args[0]:-} part=${args[1]:-0} out leader
  [[ -n $topic ]] || { echo "broker.sh: usage: leader TOPIC [PARTITION]" >&2; exit 2; }
  out=$(kcat -b "$(bootstrap_list)" -L -t "$topic" -m 5 2>&1) ||
    die "no metadata for $topic from $(bootstrap_list): $out"
  leader=$(sed -n "s/^ *partition $part, leader \(-\?[0-9]*\),.*/\1/p" <<<"$out")
  [[ -n $leader ]] || die "topic $topic has no partition $part"
  echo "$leader"
}

case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) load_rig; bootstrap_list ;;
  topic) cmd_topic ;;
  leader) cmd_leader ;;
  pause) cmd_signal STOP ;;
  resume) cmd_signal CONT ;;
  kill) cmd_signal KILL ;;
  term) cmd_term ;;
  restart) cmd_restart ;;
  fetch) check_java; fetch_jars; echo "$libs" ;;
  produce)
    load_rig; check_java; fetch_jars
    [[ -n ${args[0]:-} ]] || { echo "broker.sh: usage: produce TOPIC <lines KEY<TAB>VALUE" >&2; exit 2; }
    tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$(bootstrap_list)" \
      --topic "${args[0]}" --property parse.key=true --property key.separator=$'\t' ||
      die "producing to ${args[0]} on $(bootstrap_list) failed" ;;
  java)
    check_java; fetch_jars
    [[ -n ${args[0]:-} ]] || { echo "broker.sh: usage: java CLASS [ARGS]" >&2; exit 2; }
    tool "${args[@]}" ;;
  log) load_rig; echo "$(node_dir "$(node_arg)")/broker.log" ;;
  *) echo "broker.sh: unknown command '$cmd' (see --help)" >&2; exit 2 ;;
esac
