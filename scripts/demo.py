#!/usr/bin/env python3
"""README's first command (scripts/demo.sh runs this after installing and
building): the whole user story of ukko on one machine, on its embedded
defaults.

- Kafka: `ukko dev-kafka --topic orders:12 --topic orders-processed:12`
  (librdkafka's mock broker, docs/dev-kafka.md).
- Kubernetes: the API emulator (tests/emulator) with its StatefulSet
  controller, running tests/emulator/ukko-orders-statefulset.json: 3 pods, each
  a real `ukko run --app orders` process on its own 127.0.0.x address, finding
  the others through the API over TLS (docs/bootstrap.md) and sharing the 12
  partitions of `orders` as shards (docs/streams.md).
- Orders: produced at a steady rate by kcat, keyed by customer id with Kafka's
  murmur2 partitioner, value {"order_id", "amount"}; two more kcats read
  `orders` (what was produced) and `orders-processed` (what the pods made of it:
  each result names its source partition and offset).
- A live view every second: pods, their probes and member status, the shards
  each owns (GET /cluster/shards/orders), records/s and lag per pod (/metrics).
- The story: once the 3 are ready and orders flow, `kubectl scale statefulset
  ukko --replicas=5`, then `kill -9` of one pod's process (the emulator restarts
  it), then `--replicas=2`; then the producer stops, the pods finish the last
  orders, and the totals are printed: produced, processed (distinct source
  partition and offset in orders-processed), lost (must be 0), duplicates.

--seconds N ends it after N seconds wherever the story is (the totals still
come). Ctrl-C (or SIGTERM) ends it early the same way; a second Ctrl-C skips
waiting for the last orders. Everything it started is stopped, and it checks
that no process is left. Exit 0 when nothing was lost and every step
happened; 1 otherwise.

    python3 scripts/demo.py [--ukko build/ukko] [--replicas 3] [--seconds N] [--rate 200]
"""

import argparse
import base64
import concurrent.futures
import functools
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR_DIR = os.path.join(REPO, "tests", "emulator")
sys.path.insert(0, EMULATOR_DIR)

import emulator_client  # noqa: E402
from emulator_client import EmulatorProcess  # noqa: E402

MANIFEST = os.path.join(EMULATOR_DIR, "ukko-orders-statefulset.json")
POD_EXEC = os.path.join(EMULATOR_DIR, "emulator_pod_exec.py")
PODS = "/api/v1/namespaces/default/pods"
STS = "/apis/apps/v1/namespaces/default/statefulsets/ukko"
TOPIC, OUT_TOPIC, PARTITIONS, TYPE = "orders", "orders-processed", 12, "orders"
STEP_DEADLINE = 60.0   # a step that has not settled by then is reported and skipped
DRAIN_DEADLINE = 30.0  # the last orders must be processed within this


def parse_args(argv):
    p = argparse.ArgumentParser(prog="demo", description="ukko's whole story: dev-kafka, a StatefulSet of "
                                "`ukko run --app orders` pods on a local Kubernetes API emulator, "
                                "orders flowing; scale up, kill -9, scale down; the totals")
    p.add_argument("--ukko", default=os.path.join(REPO, "build", "ukko"), help="the ukko program (build/ukko)")
    p.add_argument("--replicas", type=int, default=3, help="pods at the start (3)")
    p.add_argument("--scale-up", type=int, default=5, help="pods after the scale-up (5)")
    p.add_argument("--scale-down", type=int, default=2, help="pods after the scale-down (2)")
    p.add_argument("--rate", type=float, default=200, help="orders produced per second (200)")
    p.add_argument("--hold", type=float, default=6, help="seconds to watch each settled state (6)")
    p.add_argument("--pod-addresses", default="127.0.0.2-127.0.0.20",
                   help="the pods' addresses (127.0.0.2-127.0.0.20)")
    p.add_argument("--manifest", default=MANIFEST, help="the StatefulSet, JSON (%s)" % os.path.relpath(MANIFEST, REPO))
    p.add_argument("--seconds", type=float, default=0,
                   help="end after this long, wherever the story is (0: when it is over)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the story, keep producing and watching until Ctrl-C (or --seconds)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between views (1)")
    p.add_argument("--keep-logs", action="store_true", help="keep the run's directory (logs) at the end")
    args = p.parse_args(argv)
    if not os.access(args.ukko, os.X_OK):
        p.error("%s is not built: run scripts/demo.sh (it builds), or cmake --build build" % args.ukko)
    if min(args.replicas, args.scale_up, args.scale_down) < 1 or args.interval <= 0 or args.rate <= 0:
        p.error("--replicas, --scale-up and --scale-down must be 1 or more, --interval and --rate above 0")
    args.kcat = shutil.which("kcat")
    if args.kcat is None:
        p.error("kcat is not installed (the demo's producer and readers): run scripts/demo.sh, "
                "which installs it, or apt-get install kcat")
    return args


# ------------------------------------------------------------------ helpers

def http_get(host, path, port=8558, timeout=0.5):
    """(status, body text) of GET http://host:port/path; (None, why) if it fails."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(4 << 20).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, (os.strerror(e.errno) if getattr(e, "errno", None) else str(e) or type(e).__name__)
    finally:
        conn.close()


def spawn(argv, log_path, run_dir, stdin=subprocess.DEVNULL, stdout=None):
    """A helper process in a session of its own (a terminal's Ctrl-C reaches
    only this script, which stops things in order) that dies with this
    process even if it is killed (emulator_pod_exec.py: PR_SET_PDEATHSIG).
    Its environment names run_dir, so that leftovers() finds it.
    Call from the main thread: the death signal is bound to the thread."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", POD_EXEC, str(os.getpid())] + argv,
                                stdin=stdin, stdout=stdout if stdout is not None else log,
                                stderr=log, start_new_session=True,
                                env=dict(os.environ, DEMO_RUN_DIR=run_dir))
    finally:
        log.close()


def stop_process(proc, timeout=5.0):
    """SIGTERM, then SIGKILL; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class OwnSessionEmulator(EmulatorProcess):
    """The emulator in a session of its own: Ctrl-C reaches this script only,
    which first lets the pods finish the last orders and then stops the
    emulator (which stops the pods with SIGTERM). It still exits with this
    script (its stdin is our pipe, --exit-with-stdin), and its pods with it."""

    def start(self):
        popen = emulator_client.subprocess.Popen
        emulator_client.subprocess.Popen = functools.partial(popen, start_new_session=True)
        try:
            return super().start()
        finally:
            emulator_client.subprocess.Popen = popen


def leftovers(root):
    """Processes whose command line or environment names root: the
    emulator and the pods (their paths), dev-kafka and the kcats (spawn)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (entry, what), "rb") as f:
                    if root.encode() in f.read():
                        with open("/proc/%s/stat" % entry) as s:
                            if s.read().split(")")[-1].split()[0] != "Z":
                                found.append(int(entry))
                        break
            except OSError:
                pass
    return found


def write_keyring(state_dir):
    """A keyring of one fresh AES-256 key (what `openssl rand -base64 32` makes)."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, "keyring.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([base64.b64encode(os.urandom(32)).decode()], f)
    return path


def set_env(container, name, value):
    env = container.setdefault("env", [])
    for e in env:
        if e.get("name") == name:
            e.pop("valueFrom", None)
            e["value"] = value
            return
    env.append({"name": name, "value": value})


def ordinal(name):
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def node_ip(node):
    """ukko://ukko@127.0.0.2:7355 -> 127.0.0.2"""
    return (node or "?").rsplit("@", 1)[-1].rsplit(":", 1)[0].strip("[]")


def compact(shards):
    """["0", "1", "2", "5", "7~"] -> "0-2 5 7~" (~: handing off)"""
    out, run = [], []
    for s in shards + [None]:
        if s is not None and s.isdigit() and run and int(s) == int(run[-1]) + 1:
            run.append(s)
            continue
        if run:
            out.append("%s-%s" % (run[0], run[-1]) if len(run) > 2 else " ".join(run))
        run = [s] if s is not None and s.isdigit() else []
        if s is not None and not s.isdigit():
            out.append(s)
    return " ".join(out)


def n(x):
    return "{:,}".format(int(x))


# ------------------------------------------------------------------ Kafka side

class Feed:
    """The orders: a kcat producer fed at a steady rate, a kcat reading
    `orders` (which (partition, offset) exist: what was produced) and one
    reading `orders-processed` (which source (partition, offset) the pods
    processed, and how often).

    tests/bench/bench_scale.py also feeds another topic (topic), with no
    reader of results (out_topic None: it hands them to result() itself), and
    keeps each partition's processing times (stamps: the results' Kafka
    timestamps, in seconds)."""

    def __init__(self, kcat, bootstrap, root, rate, topic=TOPIC, out_topic=OUT_TOPIC, stamps=False):
        self.kcat, self.bootstrap, self.root, self.rate = kcat, bootstrap, root, rate
        self.topic, self.out_topic = topic, out_topic
        self.times = [[] for _ in range(PARTITIONS)] if stamps else None
        self.lock = threading.Lock()
        self.written = 0                      # lines handed to the producer
        self.produced = [0] * PARTITIONS      # per partition: highest offset seen + 1
        self.seen = [bytearray() for _ in range(PARTITIONS)]  # per source offset: times processed
        self.distinct = 0
        self.outputs = 0
        self.bad_outputs = 0
        self.duplicates = {}                  # phase -> duplicates that arrived then
        self.node_names = []                  # the "node" of results, by first appearance
        self.first_by = [bytearray() for _ in range(PARTITIONS)]  # per source offset: 1 + its first node
        self.repeats = []                     # each duplicate: (phase, partition, offset, first node, node)
        self.phase = "start"
        self.first_processed = None           # monotonic time
        self.producer_error = None
        self.stopping = threading.Event()
        self.procs = []
        self.threads = []

    def _kcat(self, args, log, **kw):
        proc = spawn([self.kcat, "-b", self.bootstrap, "-X", "fetch.wait.max.ms=100"] + args,
                     os.path.join(self.root, log), self.root, **kw)
        self.procs.append(proc)
        return proc

    def start(self):
        # Readers first, so that nothing is missed (they read from the beginning anyway).
        self.reader_in = self._kcat(["-C", "-q", "-u", "-t", self.topic, "-o", "beginning", "-f", "%p %o\n"],
                                    "kcat-%s.log" % self.topic, stdout=subprocess.PIPE)
        targets = [self._read_inputs]
        if self.out_topic:
            self.reader_out = self._kcat(["-C", "-q", "-u", "-t", self.out_topic, "-o", "beginning", "-f",
                                          "%T %s\n" if self.times is not None else "%s\n"],
                                         "kcat-%s.log" % self.out_topic, stdout=subprocess.PIPE)
            targets.append(self._read_outputs)
        self.producer = self._kcat(["-P", "-t", self.topic, "-K", "\t", "-X", "partitioner=murmur2_random",
                                    "-X", "linger.ms=5"], "kcat-producer-%s.log" % self.topic,
                                   stdin=subprocess.PIPE)
        targets.append(self._produce)
        for target in targets:
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)

    def _produce(self):
        """rate orders a second, keyed by customer id: c0 .. c999."""
        rng = random.Random(7)
        out = self.producer.stdin
        t0 = time.monotonic()
        i = 0
        try:
            while not self.stopping.is_set():
                due = int((time.monotonic() - t0) * self.rate)
                if due > i:
                    lines = []
                    for k in range(i, due):
                        lines.append('c%d\t{"order_id":"o%d","amount":%d.%02d}\n'
                                     % (rng.randrange(1000), k + 1, rng.randrange(1, 500), rng.randrange(100)))
                    out.write("".join(lines).encode())
                    out.flush()
                    with self.lock:
                        self.written = i = due
                self.stopping.wait(0.02)
        except OSError as e:
            self.producer_error = "the producer (kcat) stopped taking orders: %s" % e

    def _read_inputs(self):
        for line in self.reader_in.stdout:
            try:
                p, o = (int(x) for x in line.split())
            except ValueError:
                continue
            if 0 <= p < PARTITIONS:
                with self.lock:
                    self.produced[p] = max(self.produced[p], o + 1)

    def _read_outputs(self):
        for line in self.reader_out.stdout:
            stamp = None
            try:
                if self.times is not None:
                    ts, line = line.split(b" ", 1)
                    stamp = int(ts) / 1000.0
                doc = json.loads(line)
                p, o = int(doc["source_partition"]), int(doc["source_offset"])
            except (ValueError, KeyError, TypeError):
                with self.lock:
                    self.bad_outputs += 1
                continue
            self.result(p, o, doc.get("node") if isinstance(doc.get("node"), str) else "?", stamp)

    def result(self, p, o, node, stamp=None):
        """Source partition p, offset o was processed by node (at stamp, in
        seconds on any clock, kept only with stamps)."""
        if not (0 <= p < PARTITIONS) or o < 0:
            with self.lock:
                self.bad_outputs += 1
            return
        with self.lock:
            if self.times is not None and stamp is not None:
                self.times[p].append(stamp)
            seen, first = self.seen[p], self.first_by[p]
            if len(seen) <= o:
                seen.extend(bytes(max(o + 1 - len(seen), 4096)))
                first.extend(bytes(len(seen) - len(first)))
            if node not in self.node_names and len(self.node_names) < 250:
                self.node_names.append(node)
            if seen[o]:
                self.duplicates[self.phase] = self.duplicates.get(self.phase, 0) + 1
                by = first[o]
                self.repeats.append((self.phase, p, o, self.node_names[by - 1] if by else "?", node))
            else:
                self.distinct += 1
                first[o] = self.node_names.index(node) + 1 if node in self.node_names else 0
            seen[o] = min(seen[o] + 1, 255)
            self.outputs += 1
            if self.first_processed is None:
                self.first_processed = time.monotonic()

    def stop_producing(self):
        """Stops the orders and waits for kcat to deliver what it holds."""
        self.stopping.set()
        self.threads[-1].join(5)  # the producer's
        try:
            self.producer.stdin.close()
        except OSError:
            pass
        try:
            code = self.producer.wait(15)
        except subprocess.TimeoutExpired:
            code = stop_process(self.producer)
        if code != 0 and not self.producer_error:
            self.producer_error = "the producer (kcat) exited with %s: see kcat-producer.log" % code

    def snapshot(self):
        with self.lock:
            produced = sum(self.produced)
            missing = 0
            for p in range(PARTITIONS):
                seen = self.seen[p]
                top = self.produced[p]
                have = min(top, len(seen))
                missing += top - have + seen[:have].count(0)
            return {"written": self.written, "produced": produced, "processed": self.distinct,
                    "outputs": self.outputs, "missing": missing, "bad": self.bad_outputs,
                    "duplicates": dict(self.duplicates), "first": self.first_processed}

    def frontier(self):
        """Per partition: the offset after the last order seen produced."""
        with self.lock:
            return list(self.produced)

    def processed_below(self, marks):
        """Whether every order below marks (a frontier()) has a result."""
        with self.lock:
            return all(len(self.seen[p]) >= m and self.seen[p][:m].count(0) == 0
                       for p, m in enumerate(marks))

    def stop(self):
        self.stopping.set()
        for proc in self.procs:
            stop_process(proc)
        for t in self.threads:
            t.join(5)


# ------------------------------------------------------------- cluster side

# ukko_kafka_lag_records was ukko_kafka_lag before the metric names were settled: either is read.
METRIC = re.compile(r'^(ukko_kafka_records_processed_total|ukko_kafka_lag(?:_records)?'
                    r'|ukko_kafka_key_partition_mismatch_total'
                    r'|process_resident_memory_bytes)(?:\{([^}]*)\})? (\S+)$')


def probe_node(ip, port):
    """What a pod's node says: /ready, its members, its shards of orders, and
    from /metrics per partition processed and lag, RSS."""
    out = {"ready": None, "ready_reason": "", "members": None, "shards": None, "processed": {},
           "lag": None, "rss": None, "mismatch": 0}
    code, body = http_get(ip, "/ready", port)
    out["ready"] = code
    if code is not None and code != 200:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        out["ready_reason"] = "; ".join(lines[1:] if len(lines) > 1 else lines)
    if code is None:
        return out
    code, body = http_get(ip, "/cluster/members", port)
    if code == 200:
        try:
            out["members"] = json.loads(body)
        except ValueError:
            pass
    code, body = http_get(ip, "/cluster/shards/" + TYPE, port)
    if code == 200:
        try:
            out["shards"] = json.loads(body)
        except ValueError:
            pass
    code, body = http_get(ip, "/metrics", port)
    if code == 200:
        lag = 0.0
        for line in body.splitlines():
            m = METRIC.match(line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            part = re.search(r'partition="(\d+)"', labels)
            if name == "ukko_kafka_records_processed_total" and part:
                out["processed"][int(part.group(1))] = value
            elif name in ("ukko_kafka_lag_records", "ukko_kafka_lag"):
                lag += value
                out["lag"] = lag
            elif name == "process_resident_memory_bytes":
                out["rss"] = value
            elif name == "ukko_kafka_key_partition_mismatch_total":
                out["mismatch"] += value
    return out


def pod_row(pod):
    meta, status = pod["metadata"], pod.get("status") or {}
    cs = (status.get("containerStatuses") or [{}])[0]
    state = cs.get("state") or {}
    phase = status.get("phase") or "?"
    if meta.get("deletionTimestamp"):
        phase = "Terminating"
    elif "waiting" in state and state["waiting"].get("reason"):
        phase = state["waiting"]["reason"]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    port = 8558
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == "management":
                port = p.get("containerPort", port)
    cid = cs.get("containerID") or ""
    pid = int(cid.split("://", 1)[1]) if cid.startswith("emulator://") and cid[11:].isdigit() else None
    return {"name": meta["name"], "ip": status.get("podIP") or "", "port": port, "phase": phase,
            "k8s_ready": ready, "restarts": cs.get("restartCount", 0), "pid": pid,
            "running": "running" in state, "terminating": bool(meta.get("deletionTimestamp"))}


class View:
    """One look at the cluster: the pods (from the API) and what each node says."""

    def __init__(self, pods, nodes):
        self.pods, self.nodes = pods, nodes
        self.by_ip = {p["ip"]: p["name"] for p in pods if p["ip"]}

    def name_of(self, node):
        ip = node_ip(node)
        return self.by_ip.get(ip, ip)

    def owners(self):
        """shard -> [pods running it], from each pod's own regions."""
        owners = {}
        for p in self.pods:
            sh = (self.nodes.get(p["name"]) or {}).get("shards") or {}
            for r in sh.get("regions") or []:
                owners.setdefault(int(r.get("shardId", -1)), []).append(p["name"])
        return owners

    def shards_of(self, name):
        sh = (self.nodes.get(name) or {}).get("shards") or {}
        out = []
        for r in sh.get("regions") or []:
            s = str(r.get("shardId"))
            out.append(s + ("~" if r.get("status") == "handing-off" else ""))
        return sorted(out, key=lambda s: int(s.rstrip("~")) if s.rstrip("~").isdigit() else 0)

    def clusters(self):
        """Groups of pods that see one another as members: 1 is one cluster.
        A pod still Joining (or not a member) is in none yet."""
        names = [p["name"] for p in self.pods if self.self_status(p["name"]) not in (None, "Joining")]
        links = {name: set() for name in names}
        for name in names:
            for m in self.nodes[name]["members"].get("members") or []:
                other = self.name_of(m.get("node"))
                if other in links:
                    links[name].add(other)
                    links[other].add(name)
        groups, left = [], set(names)
        while left:
            todo, group = [left.pop()], set()
            while todo:
                x = todo.pop()
                group.add(x)
                for y in links[x]:
                    if y in left:
                        left.discard(y)
                        todo.append(y)
            groups.append(group)
        return groups

    def self_status(self, name):
        """This pod's member status as its node sees it, or None."""
        m = (self.nodes.get(name) or {}).get("members")
        if not m:
            return None
        mine = [x for x in m.get("members") or [] if x.get("node") == m.get("selfNode")]
        return mine[0].get("status") if mine else None

    def members_line(self):
        """The members as the oldest answering pod sees them."""
        for p in self.pods:
            m = (self.nodes.get(p["name"]) or {}).get("members")
            if m and m.get("members"):
                parts = ["%s %s" % (self.name_of(x.get("node")), x.get("status", "?"))
                         for x in m["members"]]
                unreachable = [self.name_of(x.get("node")) for x in m.get("unreachable") or []]
                return "%s%s%s" % (
                    ", ".join(parts), " (leader %s)" % self.name_of(m["leader"]) if m.get("leader") else "",
                    "; unreachable: " + ", ".join(unreachable) if unreachable else "")
        return None

    def live(self):
        """The pods not being deleted."""
        return [p for p in self.pods if not p["terminating"]]

    def settled(self, replicas):
        """replicas pods (besides those being deleted), all ready, in one
        cluster, and each of the 12 shards running on exactly one of them,
        every one running at least one (none on a pod being deleted)."""
        live = self.live()
        if len(live) != replicas or not all(p["k8s_ready"] for p in live):
            return False
        if len(self.clusters()) != 1:
            return False
        owners = self.owners()
        if sorted(owners) != list(range(PARTITIONS)) or any(len(v) != 1 for v in owners.values()):
            return False
        if any(s.endswith("~") for p in self.pods for s in self.shards_of(p["name"])):
            return False
        busy = {v[0] for v in owners.values()}
        return busy <= {p["name"] for p in live} and len(busy) == min(replicas, PARTITIONS)

    def pod(self, name):
        return next((p for p in self.pods if p["name"] == name), None)


class Rates:
    """records/s per pod from each partition's ukko_kafka_records_processed_total
    (a counter that starts again when a partition comes back or a pod restarts)."""

    def __init__(self):
        self.last = {}   # pod -> (pid, time, {partition: value})
        self.rates = {}

    def update(self, view, now):
        for p in view.pods:
            node = view.nodes.get(p["name"]) or {}
            cur = node.get("processed")
            if cur is None or node.get("ready") is None:
                continue
            prev = self.last.get(p["name"])
            if prev and prev[0] == p["pid"] and now - prev[1] < 0.9:
                continue  # a rate over at least about a second
            if prev and prev[0] == p["pid"]:
                done = sum(v - prev[2][k] if v >= prev[2].get(k, 0) and k in prev[2] else v
                           for k, v in cur.items())
                self.rates[p["name"]] = done / (now - prev[1])
            self.last[p["name"]] = (p["pid"], now, dict(cur))


# ------------------------------------------------------------------ screen

class Screen:
    """Redraws the view in place on a terminal; elsewhere prints it when
    something happened and every few seconds."""

    def __init__(self, every):
        self.tty = sys.stdout.isatty()
        self.drawn = 0
        self.every = every
        self.count = 0
        self.due = True

    def view(self, lines):
        self.count += 1
        if not self.tty and not (self.due or self.count % self.every == 0):
            return
        self.due = False
        if self.tty:
            # Lines wider than the terminal would wrap and spoil the redraw.
            width = shutil.get_terminal_size().columns
            lines = [line if len(line) < width else line[:width - 2] + "…" for line in lines]
        if self.tty and self.drawn:
            sys.stdout.write("\033[%dF\033[J" % self.drawn)
        sys.stdout.write("\n".join(lines) + "\n")
        if not self.tty:
            sys.stdout.write("\n")
        sys.stdout.flush()
        self.drawn = len(lines) if self.tty else 0

    def keep(self):
        """The last view stays on the screen."""
        self.drawn = 0

    def text(self, text):
        """Text that stays (above the views that follow)."""
        if self.tty and self.drawn:
            sys.stdout.write("\033[%dF\033[J" % self.drawn)
            self.drawn = 0
        sys.stdout.write(text)
        sys.stdout.flush()
        self.due = True


# ------------------------------------------------------------------ the demo

class Demo:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.root = tempfile.mkdtemp(prefix="ukko-demo-")
        self.screen = Screen(max(1, int(round(5 / args.interval))))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.view = View([], {})
        self.rates = Rates()
        self.interrupts = 0
        self.failures = []
        self.steps_done = []
        self.ready_at = None
        self.dev_kafka = self.emu = self.feed = None
        self.bootstrap = None
        self.first_shown = self.producer_error_shown = False
        self.rendered = 0.0

    # -- output

    def since(self):
        return time.monotonic() - self.t0

    def event(self, text):
        self.screen.text("%+6.1fs  %s\n" % (self.since(), text))

    def render(self):
        v, snap = self.view, self.feed.snapshot() if self.feed else None
        lines = []
        clusters = v.clusters()
        ready = sum(1 for p in v.pods if p["k8s_ready"])
        head = "+%.0fs  %d pods, %d ready" % (self.since(), len(v.pods), ready)
        if clusters:
            head += ", %s" % ("one cluster" if len(clusters) == 1 else "%d clusters" % len(clusters))
        if snap:
            rate = sum(self.rates.rates.get(p["name"], 0) for p in v.pods)
            head += " | orders: %s produced, %s processed, %.0f/s" % (n(snap["produced"]), n(snap["processed"]), rate)
        lines.append(head)
        members = v.members_line()
        if members:
            lines.append("members: " + members)
        cols = ("POD", "STATUS", "READY", "RESTARTS", "MEMBER", "SHARDS", "REC/S", "LAG", "RSS")
        rows = []
        for p in v.pods:
            node = v.nodes.get(p["name"]) or {}
            member = v.self_status(p["name"]) or "-"
            if member == "-" and node.get("ready") == 500 and node.get("ready_reason"):
                member = "(%s)" % node["ready_reason"][:30]
            rate = self.rates.rates.get(p["name"])
            rows.append((p["name"], p["phase"], "1/1" if p["k8s_ready"] else "0/1", str(p["restarts"]), member,
                         compact(v.shards_of(p["name"])) or "-",
                         "%.0f" % rate if rate is not None and node.get("ready") is not None else "-",
                         "%.0f" % node["lag"] if node.get("lag") is not None else "-",
                         "%.1fM" % (node["rss"] / 1048576) if node.get("rss") else "-"))
        widths = [max(len(r[i]) for r in rows + [cols]) for i in range(len(cols))]
        for r in [cols] + rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return lines

    # -- looking

    def look(self):
        status, doc = self.emu.client.get_json(PODS + "?labelSelector=app%3Dukko")
        pods = sorted((pod_row(p) for p in doc.get("items") or []), key=lambda p: ordinal(p["name"])) \
            if status == 200 else []
        futures = {p["name"]: self.pool.submit(probe_node, p["ip"], p["port"]) for p in pods if p["ip"]}
        self.view = View(pods, {name: f.result() for name, f in futures.items()})
        self.rates.update(self.view, time.monotonic())

    def tick(self):
        """One look, the events it shows, and the view (once an interval)."""
        self.look()
        v, snap = self.view, self.feed.snapshot()
        if self.ready_at is None and len(v.pods) == self.args.replicas and all(p["k8s_ready"] for p in v.pods) \
                and len(v.clusters()) == 1:
            self.ready_at = self.since()
            self.event("%d pods ready (/ready 200: members of one cluster) %.1f s after the start"
                       % (len(v.pods), self.ready_at))
        if snap["first"] is not None and not self.first_shown:
            self.first_shown = True
            self.event("first order processed %.1f s after the start (its result is in %s)"
                       % (snap["first"] - self.t0, OUT_TOPIC))
        if self.feed.producer_error and not self.producer_error_shown:
            self.producer_error_shown = True
            self.event(self.feed.producer_error)
            self.failures.append(self.feed.producer_error)
        now = time.monotonic()
        if self.screen.due or now - self.rendered >= self.args.interval * 0.9:
            self.rendered = now
            self.screen.view(self.render())

    def wait(self, seconds, cond=None):
        """Ticks for up to seconds, until cond(view) holds (if given).
        Returns True if cond held, False at the deadline or when ended."""
        deadline = time.monotonic() + seconds
        while True:
            if self.ending():
                return False
            if cond is not None and cond(self.view):
                return True
            if time.monotonic() >= deadline:
                return cond is None
            # Quicker looks until orders flow, so that the start is timed closely.
            next_tick = time.monotonic() + (self.args.interval if self.first_shown else 0.25)
            while time.monotonic() < next_tick and not self.ending():
                time.sleep(0.05)
            self.tick()

    def ending(self):
        return self.interrupts > 0 or (self.args.seconds and self.since() >= self.args.seconds)

    # -- doing

    def kubectl(self, *argv):
        """kubectl against the emulator when it is installed, as a user would."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            return None
        env = dict(os.environ, HOME=self.root)
        env.pop("KUBECONFIG", None)
        cmd = [kubectl, "--kubeconfig", os.path.join(self.emu.state_dir, "kubeconfig"),
               "--cache-dir", os.path.join(self.root, "kube-cache")] + list(argv)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    def scale(self, replicas):
        said = self.kubectl("scale", "statefulset", "ukko", "--replicas=%d" % replicas)
        if said is None:  # no kubectl: the same request through the API
            resp = self.emu.client.request("PATCH", STS + "/scale", body=json.dumps({"spec": {"replicas": replicas}}),
                                           headers={"Content-Type": "application/merge-patch+json"})
            said = "statefulset.apps/ukko scaled" if resp.status == 200 else "failed: %d" % resp.status
        self.event("$ kubectl scale statefulset ukko --replicas=%d   -> %s" % (replicas, said))

    def step(self, what, replicas, started):
        ok = self.wait(STEP_DEADLINE, lambda v: v.settled(replicas))
        if ok:
            per = ", ".join("%s %s" % (p["name"], ",".join(self.view.shards_of(p["name"])))
                            for p in self.view.live())
            self.event("%s: %d pods ready, one cluster, each of the 12 shards on one pod (%.1f s): %s"
                       % (what, replicas, time.monotonic() - started, per))
            self.steps_done.append(what)
        elif not self.ending():
            why = "%s: not settled after %.0f s (%d pods, %d ready, %d cluster(s)); see the logs" % (
                what, STEP_DEADLINE, len(self.view.pods), sum(p["k8s_ready"] for p in self.view.pods),
                len(self.view.clusters()))
            self.event(why)
            self.failures.append(why)
        return ok

    def story(self):
        a = self.args
        self.feed.phase = "start"
        if not self.step("started", a.replicas, self.t0):
            return
        if not self.wait(STEP_DEADLINE, lambda v: self.feed.first_processed is not None):
            return
        self.wait(a.hold)
        if self.ending():
            return
        self.feed.phase = "scale-up"
        started = time.monotonic()
        self.scale(a.scale_up)
        if not self.step("scaled to %d" % a.scale_up, a.scale_up, started):
            return
        self.wait(a.hold)
        if self.ending():
            return
        victim = self.view.pod("ukko-1") or self.view.pods[0]
        restarts = victim["restarts"]
        self.feed.phase = "kill -9"
        started = time.monotonic()
        try:
            os.kill(victim["pid"], signal.SIGKILL)
            self.event("$ kill -9 %d   (%s's process: no hand-off, no leave; the emulator restarts it)"
                       % (victim["pid"], victim["name"]))
        except (OSError, TypeError) as e:
            self.event("could not kill %s: %s" % (victim["name"], e))
        # The view is settled until the emulator notices: first see the pod run again.
        if not self.wait(STEP_DEADLINE, lambda v: (v.pod(victim["name"]) or {}).get("restarts", 0) > restarts
                         and v.pod(victim["name"])["pid"] not in (None, victim["pid"])):
            if not self.ending():
                self.failures.append("%s was not restarted within %.0f s" % (victim["name"], STEP_DEADLINE))
            return
        self.event("%s runs again (restart %d, new process %s), and joins as a new incarnation"
                   % (victim["name"], self.view.pod(victim["name"])["restarts"], self.view.pod(victim["name"])["pid"]))
        if not self.step("%s killed and back" % victim["name"], a.scale_up, started):
            return
        self.wait(a.hold)
        if self.ending():
            return
        self.feed.phase = "scale-down"
        started = time.monotonic()
        self.scale(a.scale_down)
        if not self.step("scaled to %d" % a.scale_down, a.scale_down, started):
            return
        self.feed.phase = "end"
        self.wait(a.hold)

    def drain(self):
        """Stops the orders and waits until every one produced was processed."""
        self.screen.text("%+6.1fs  %s\n" % (self.since(), "stopping the producer; waiting for the pods to process "
                                             "the last orders (Ctrl-C skips this)"))
        self.feed.phase = "drain"
        self.feed.stop_producing()
        asked = self.interrupts
        deadline = time.monotonic() + DRAIN_DEADLINE
        while time.monotonic() < deadline and self.interrupts <= asked:
            snap = self.feed.snapshot()
            if snap["produced"] >= snap["written"] and snap["missing"] == 0:
                return True
            self.look()
            self.screen.view(self.render())
            end = time.monotonic() + self.args.interval / 2
            while time.monotonic() < end and self.interrupts <= asked:
                time.sleep(0.05)
        return False

    def totals(self, drained):
        self.screen.keep()
        s = self.feed.snapshot()
        dups = sum(s["duplicates"].values())
        lines = ["", "totals after %.0f s:" % self.since(),
                 "  produced    %s orders (%s partitions of %s)" % (n(s["produced"]), PARTITIONS, TOPIC),
                 "  processed   %s (distinct source partition and offset in %s; %s records there)"
                 % (n(s["processed"]), OUT_TOPIC, n(s["outputs"]))]
        if drained:
            lines.append("  lost        %s" % n(s["missing"]))
        else:
            lines.append("  lost        not known: %s order(s) were not processed yet when the demo stopped "
                         "(still in %s, after the committed offsets)" % (n(s["missing"]), TOPIC))
        where = ", ".join("%s during %s" % (n(c), ph) for ph, c in sorted(s["duplicates"].items()))
        lines.append("  duplicates  %s%s" % (n(dups), " (%s)" % where if dups else ""))
        if dups:
            lines.append("              at-least-once: a pod killed with -9 commits nothing more, so its new owners "
                         "process again what it did after its last commit")
        if s["bad"]:
            lines.append("  %d record(s) in %s without a source partition and offset" % (s["bad"], OUT_TOPIC))
        if s["first"] is not None:
            lines.append("  first order processed %.1f s after the start%s" % (
                s["first"] - self.t0, "; %d pods ready after %.1f s" % (self.args.replicas, self.ready_at)
                if self.ready_at is not None else ""))
        mismatch = sum((node or {}).get("mismatch", 0) for node in self.view.nodes.values())
        if mismatch:
            lines.append("  %d record(s) whose key does not hash to their partition (murmur2)" % mismatch)
        self.screen.text("\n".join(lines) + "\n")
        if drained and s["missing"]:
            self.failures.append("%d order(s) lost" % s["missing"])
        if (s["produced"] == 0 or s["processed"] == 0) and not self.interrupts:
            self.failures.append("no order was %s" % ("produced" if s["produced"] == 0 else "processed"))

    def start(self):
        a = self.args
        # dev-kafka: the bootstrap servers are its first line; stdin stays open (its fault channel).
        self.dev_kafka = spawn([os.path.abspath(a.ukko), "dev-kafka", "--topic", "%s:%d" % (TOPIC, PARTITIONS),
                                "--topic", "%s:%d" % (OUT_TOPIC, PARTITIONS), "--log-format", "text"],
                               os.path.join(self.root, "dev-kafka.log"), self.root, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
        self.bootstrap = self.dev_kafka.stdout.readline().decode().strip()
        if not self.bootstrap:
            raise RuntimeError("ukko dev-kafka did not start (exit %s); see %s"
                               % (self.dev_kafka.poll(), os.path.join(self.root, "dev-kafka.log")))
        # The StatefulSet: the demo's, with this run's broker and cluster key.
        with open(a.manifest) as f:
            sts = json.load(f)
        sts.setdefault("spec", {})["replicas"] = a.replicas
        keyring = write_keyring(os.path.join(self.root, "state"))
        for c in sts["spec"]["template"]["spec"]["containers"][:1]:
            set_env(c, "UKKO_KAFKA_BOOTSTRAP_SERVERS", self.bootstrap)
            set_env(c, "UKKO_CLUSTER_KEYRING_PATH", keyring)
        manifest = os.path.join(self.root, "statefulset.json")
        with open(manifest, "w") as f:
            json.dump(sts, f)
        self.feed = Feed(a.kcat, self.bootstrap, self.root, a.rate)
        self.feed.start()
        self.emu = OwnSessionEmulator(["--controller", "--ukko", os.path.abspath(a.ukko),
                                       "--pod-addresses", a.pod_addresses, "--statefulset-file", manifest],
                                      root=self.root)
        self.emu.start()
        version = subprocess.run([a.ukko, "--version"], capture_output=True, text=True).stdout.strip()
        self.screen.text(
            "%s: the whole story on one machine\n"
            "  Kafka       ukko dev-kafka (librdkafka's mock broker) at %s: %s, %s (%d partitions)\n"
            "  Kubernetes  API emulator at https://%s:%d; StatefulSet ukko, %d pods on %s,\n"
            "              each `ukko run --app orders`\n"
            "  Orders      %.0f/s keyed by customer id (murmur2), one result each in %s\n"
            "  Story       scale to %d, kill -9 one pod, scale to %d, then the totals (%s; Ctrl-C ends it early)\n"
            "  View        members as the first pod answering sees them; per pod: status, the partitions of %s\n"
            "              it runs (SHARDS, ~ handing off), records/s and lag (end - committed offset) from /metrics\n"
            "  Logs        %s/: state/pods/default_ukko-N.log, dev-kafka.log, kcat-*.log, emulator.log\n"
            "  kubectl     export KUBECONFIG=%s; kubectl get pods -w\n\n"
            % (version or "ukko", self.bootstrap, TOPIC, OUT_TOPIC, PARTITIONS, self.emu.info["host"],
               self.emu.info["port"], a.replicas, a.pod_addresses, a.rate, OUT_TOPIC, a.scale_up, a.scale_down,
               "--seconds %g" % a.seconds if a.seconds else "about 35 s", TOPIC, self.root,
               os.path.join(self.emu.state_dir, "kubeconfig")))

    def stop(self):
        """Stops everything, pods first (the emulator sends them SIGTERM), the
        broker last. Returns the problems found."""
        problems = []
        self.screen.text("\nstopping: the emulator sends SIGTERM to every pod, then the readers%s ...\n"
                         % (" and dev-kafka" if self.dev_kafka is not None else ""))
        self.pool.shutdown()
        if self.emu is not None:
            code = self.emu.terminate(timeout=45)
            if code != 0:
                problems.append("the emulator exited with %s; the end of its log:\n%s" % (code, self.emu.log_tail(30)))
            stops = []
            logs = os.path.join(self.emu.state_dir, "pods")
            for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, name), errors="replace") as f:
                    last = [line for line in f if "node:" in line and "stopped" in line][-1:]
                stops.append("%s %s" % (name[:-4].split("_", 1)[-1],
                                        last[0].split("node:", 1)[-1].split(";")[0].strip()
                                        if last else "(no stop line: see its log)"))
            if stops:
                self.screen.text("  %s\n" % ", ".join(stops))
        if self.feed is not None:
            self.feed.stop()
        if self.dev_kafka is not None:
            code = stop_process(self.dev_kafka)
            if code != 0:
                problems.append("ukko dev-kafka exited with %s (see dev-kafka.log)" % code)
        left = leftovers(self.root)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if left:
            problems.append("processes were left behind and have been killed: %s" % left)
        return problems

    def run(self):
        drained = False
        problems = []
        try:
            self.start()
            self.story()
            if self.args.keep_running and not self.ending():
                self.event("the story is over; still producing and watching (Ctrl-C ends it)")
                self.wait(float("inf") if not self.args.seconds else max(0.0, self.args.seconds - self.since()))
            if self.interrupts:
                self.event("Ctrl-C")
            elif self.args.seconds and self.since() >= self.args.seconds and len(self.steps_done) < 4:
                self.event("--seconds %g: the story ends here" % self.args.seconds)
            drained = self.drain()
            self.totals(drained)
        except (RuntimeError, OSError) as e:
            problems.append(str(e))
        finally:
            # A further Ctrl-C must not cut the stop short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            problems += self.stop()
        problems = self.failures + problems
        keep = self.args.keep_logs or bool(problems)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
        for p in problems:
            sys.stdout.write("problem: %s\n" % p)
        ok = not problems and (drained or self.interrupts)
        sys.stdout.write("%s; nothing left running.%s\n" % (
            "done" if ok else "FAILED", " Logs kept in %s" % self.root if keep else ""))
        return 0 if ok else 1


def main(argv):
    args = parse_args(argv)
    demo = Demo(args)

    def on_signal(signum, frame):
        demo.interrupts += 1
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return demo.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
