#!/usr/bin/env python3
"""bench_scale.py: issue 12's benchmark. Scale 3 -> 5 -> 2 with the stream
running on the real Apache Kafka broker (tests/kafka/kafka_rig.py), done by
ukko and, in the same run against the same broker at the same rate, by a
librdkafka consumer group (the member processes of bench_kafka_baseline's
group figures, `bench_kafka_baseline --member`, cooperative-sticky).

- ukko: the orders StatefulSet (tests/emulator/ukko-orders-statefulset.json) on
  the Kubernetes API emulator's controller, pods on 127.0.8.21-40, scaled with
  `kubectl scale` (through the API when kubectl is missing), orders produced and
  read with kcat by scripts/demo.py's Feed, the states read by its View.
- the group: 3 members on a topic of its own, 2 more started, then the 3 of
  the highest numbers stopped with SIGTERM (rd_kafka_consumer_close: revoke,
  commit, leave), as a StatefulSet scale-down stops its highest ordinals.

Per step: seconds until every pod is ready (ukko: each pod's READY, from its
/ready, which the emulator probes every 100 ms, so that the figure is the
node's and not a probe period's; the group has no such thing) and until the work settled (ukko: one
cluster and each shard on exactly one live pod; the group: every member holds
partitions, all 12 held once, the last assignment change), the longest
processing gap of any partition from the step's start to `--hold` seconds after
it settled (ukko: the Kafka timestamps of the results in orders-processed; the
group: when its members processed each record), and the duplicates. At the end,
with the producer stopped and every record processed: lost (must be 0) and
duplicates. Side by side, then ONE JSON line. It asserts nothing about timing:
exit 1 only when a step did not happen or a record was lost.

    python3 tests/bench/bench_scale.py [--ukko build/ukko]
        [--baseline build/tests/bench/bench_kafka_baseline] [--rate 1000] [--hold 5] [--quick]

Without kcat or a real broker it prints "SKIPPED: <why>" and its JSON line
with nulls, and exits 0.
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "tests", "kafka"))

import demo  # noqa: E402
from kafka_rig import KafkaRig, KafkaUnavailable  # noqa: E402

GROUP_TOPIC = "group-orders"
PARTITIONS = demo.PARTITIONS
STEPS = (("start", 3), ("scale to 5", 5), ("scale to 2", 2))
DEADLINE = 120.0       # a step that has not settled by then failed
QUIET = 1.0            # a group assignment unchanged this long is settled (bench_kafka_group.c)
# bench_kafka_group.c's wire_t: type, pad[3], partition, offset, seq, t_us, produced_us, parts[4]
WIRE = struct.Struct("<B3xiqQqq4Q")


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def longest_gap(times, start, end):
    """The longest time any partition went without a record processed, over
    [start, end]: between two records processed (the second inside the
    window), or from the last one to end. (seconds, partition)."""
    worst, where = 0.0, None
    for p, ts in enumerate(times):
        ts = sorted(t for t in ts if t <= end)
        last = None
        for t in ts:
            if t >= start and last is not None and t - last > worst:
                worst, where = t - last, p
            last = t
        if last is not None and end - max(last, start) > worst:
            worst, where = end - max(last, start), p
    return worst, where


def drained(feed, deadline):
    """Stops the producer and waits until every record produced was processed."""
    feed.stop_producing()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        s = feed.snapshot()
        if s["produced"] >= s["written"] and s["missing"] == 0:
            return True
        time.sleep(0.2)
    return False


def step_record(name, replicas, ready_s, settled_s, gap, dups):
    return {"step": name, "replicas": replicas, "ready_s": ready_s, "settled_s": settled_s,
            "gap_s": round(gap[0], 3) if gap else None, "gap_partition": gap[1] if gap else None,
            "duplicates": dups}


# ------------------------------------------------------------------ ukko

class UkkoScale(demo.Demo):
    """demo.py's Demo on the real broker, telling its steps' times."""

    def __init__(self, args, bootstrap):
        super().__init__(args)
        self.real_bootstrap = bootstrap
        self.steps = []
        self.steady_gap = None

    def start(self):
        a = self.args
        with open(a.manifest) as f:
            sts = json.load(f)
        sts["spec"]["replicas"] = STEPS[0][1]
        keyring = demo.write_keyring(os.path.join(self.root, "state"))
        c = sts["spec"]["template"]["spec"]["containers"][0]
        demo.set_env(c, "UKKO_KAFKA_BOOTSTRAP_SERVERS", self.real_bootstrap)
        demo.set_env(c, "UKKO_CLUSTER_KEYRING_PATH", keyring)
        manifest = os.path.join(self.root, "statefulset.json")
        with open(manifest, "w") as f:
            json.dump(sts, f)
        self.bootstrap = self.real_bootstrap
        self.feed = demo.Feed(a.kcat, self.bootstrap, self.root, a.rate, stamps=True)
        self.feed.start()
        self.emu = demo.OwnSessionEmulator(["--controller", "--ukko", os.path.abspath(a.ukko), "--pod-addresses",
                                            a.pod_addresses, "--probe-period-ms", "100"], root=self.root)
        self.emu.start()
        self.t_wall = time.time()
        self.t_mono = time.monotonic()
        self.emu.client.request("POST", "/apis/apps/v1/namespaces/default/statefulsets", body=json.dumps(sts),
                                headers={"Content-Type": "application/json"})

    def ready(self, replicas):
        return lambda v: len(v.live()) == replicas and all(p["k8s_ready"] for p in v.live())

    def story(self):
        a = self.args
        for name, replicas in STEPS:
            self.feed.phase = name
            if name != "start":
                self.t_wall, self.t_mono = time.time(), time.monotonic()
                self.scale(replicas)
            if not self.wait(DEADLINE, self.ready(replicas)):
                self.failures.append("ukko %s: %d pods not ready within %.0f s" % (name, replicas, DEADLINE))
                return
            ready_s = time.monotonic() - self.t_mono
            if not self.step(name, replicas, self.t_mono):
                return
            settled_s = time.monotonic() - self.t_mono
            if name == "start":
                # A steady stretch first: the gaps that are only the keys' randomness.
                if not self.wait(DEADLINE, lambda v: self.feed.first_processed is not None):
                    self.failures.append("ukko: no order processed within %.0f s" % DEADLINE)
                    return
                self.wait(a.hold)
                w0 = time.time()
                self.wait(a.hold)
                time.sleep(0.5)  # the reader's last results of the stretch
                self.steady_gap = longest_gap(self.feed.times, w0, time.time() - 0.5)
            else:
                self.wait(a.hold)
            end = time.time()
            self.wait(1.0)  # results of the window still on their way to the reader
            self.steps.append(step_record(name, replicas, round(ready_s, 2), round(settled_s, 2),
                                          longest_gap(self.feed.times, self.t_wall, end) if name != "start"
                                          else None, self.feed.duplicates.get(name, 0)))
            self.event("ukko %s: every pod ready after %.2f s, settled after %.2f s" % (name, ready_s, settled_s))


# ------------------------------------------------------------------ the group

class Member:
    def __init__(self, index, proc):
        self.index, self.proc = index, proc
        self.parts = None        # the assignment it last reported (None: none yet)
        self.closed = False
        self.thread = None


class GroupScale:
    """The same steps by a consumer group of bench_kafka_baseline --member
    processes; their reports go to a Feed through its result()."""

    def __init__(self, args, bootstrap, root):
        self.args, self.bootstrap, self.root = args, bootstrap, root
        self.feed = demo.Feed(args.kcat, bootstrap, root, args.rate, topic=GROUP_TOPIC, out_topic=None,
                              stamps=True)
        self.members = []
        self.lock = threading.Lock()
        self.last_change = time.monotonic()
        self.steps = []
        self.steady_gap = None
        self.failures = []

    def spawn(self, i):
        argv = [self.args.baseline, "--member", str(i % 4), "--bootstrap", self.bootstrap, "--topic", GROUP_TOPIC,
                "--group", "bench-scale", "--strategy", self.args.strategy]
        proc = demo.spawn(argv, os.path.join(self.root, "member-%d.log" % i), self.root, stdout=subprocess.PIPE)
        m = Member(i, proc)
        m.thread = threading.Thread(target=self.read, args=(m,), daemon=True)
        m.thread.start()
        self.members.append(m)

    def read(self, m):
        out = m.proc.stdout
        while True:
            buf = out.read(WIRE.size)
            if not buf or len(buf) < WIRE.size:
                break
            kind, p, o, _seq, t_us, _produced, *bits = WIRE.unpack(buf)
            if kind == ord("R"):
                self.feed.result(p, o, "member-%d" % m.index, t_us / 1e6)
            elif kind == ord("A"):
                parts = {b * 64 + k for b, word in enumerate(bits) for k in range(64) if word >> k & 1}
                with self.lock:
                    if parts != m.parts:
                        self.last_change = t_us / 1e6
                    m.parts = parts
            elif kind == ord("C"):
                with self.lock:
                    m.closed = True
                    m.parts = set()
                    self.last_change = t_us / 1e6

    def settled(self, active):
        """Every active member holds partitions, all are held once, the others
        closed, and nothing changed for QUIET seconds."""
        with self.lock:
            held = []
            for m in self.members:
                if m.index in active:
                    if not m.parts or m.closed:
                        return False
                    held += sorted(m.parts)
                elif not m.closed and m.proc.poll() is None:
                    return False
            return sorted(held) == list(range(PARTITIONS)) and time.monotonic() - self.last_change >= QUIET

    def wait(self, cond, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def run(self):
        a = self.args
        self.feed.start()
        try:
            for name, replicas in STEPS:
                self.feed.phase = name
                t0 = time.monotonic()
                have = len([m for m in self.members if not m.closed and m.proc.poll() is None])
                if replicas > have:
                    for i in range(have, replicas):
                        self.spawn(i)
                else:
                    for m in sorted(self.members, key=lambda m: -m.index):
                        if m.index >= replicas and m.proc.poll() is None:
                            m.proc.send_signal(signal.SIGTERM)
                active = set(range(replicas))
                if not self.wait(lambda: self.settled(active), DEADLINE):
                    self.failures.append("group %s: not settled within %.0f s" % (name, DEADLINE))
                    return
                settled_s = self.last_change - t0
                if name == "start":
                    if not self.wait(lambda: self.feed.first_processed is not None, DEADLINE):
                        self.failures.append("group: no record processed within %.0f s" % DEADLINE)
                        return
                    time.sleep(a.hold)
                    w0 = time.monotonic()
                    time.sleep(a.hold)
                    self.steady_gap = longest_gap(self.feed.times, w0, time.monotonic())
                else:
                    time.sleep(a.hold)
                end = time.monotonic()
                self.steps.append(step_record(name, replicas, None, round(settled_s, 2),
                                              longest_gap(self.feed.times, t0, end) if name != "start" else None,
                                              self.feed.duplicates.get(name, 0)))
                say("group %s: settled after %.2f s" % (name, settled_s))
            self.feed.phase = "drain"
            if not drained(self.feed, 60):
                self.failures.append("group: %d record(s) not processed 60 s after the producer stopped"
                                     % self.feed.snapshot()["missing"])
        finally:
            for m in self.members:
                demo.stop_process(m.proc)
            for m in self.members:
                m.thread.join(5)
            self.feed.stop()


# ------------------------------------------------------------------ main

def totals(feed):
    s = feed.snapshot()
    return {"produced": s["produced"], "processed": s["processed"], "lost": s["missing"],
            "duplicates": sum(s["duplicates"].values())}


def fmt(x, unit=" s"):
    return "-" if x is None else "%.2f%s" % (x, unit)


def report(args, broker, ukko, group, skipped=None):
    u_steps = {s["step"]: s for s in (ukko or {}).get("steps", [])}
    g_steps = {s["step"]: s for s in (group or {}).get("steps", [])}
    if not skipped:
        say("")
        say("scale 3 -> 5 -> 2 at %d records/s, %d partitions, on Apache Kafka %s" % (args.rate, PARTITIONS, broker))
        say("%-12s %-26s %-26s" % ("", "ukko (StatefulSet pods)", "consumer group (%s)" % args.strategy))
        for name, _ in STEPS:
            u, g = u_steps.get(name, {}), g_steps.get(name, {})
            say("%-12s ready %-8s settled %-8s  settled %-8s" % (name, fmt(u.get("ready_s")), fmt(u.get("settled_s")),
                                                             fmt(g.get("settled_s"))))
            if name != "start":
                say("%-12s longest gap %-7s dups %-5s  longest gap %-7s dups %s"
                    % ("", fmt(u.get("gap_s")), u.get("duplicates", "-"), fmt(g.get("gap_s")), g.get("duplicates", "-")))
        say("%-12s gap %-14s            gap %s" % ("steady", fmt((ukko or {}).get("steady_gap_s")),
                                                    fmt((group or {}).get("steady_gap_s"))))
        for side, t in (("ukko", ukko), ("group", group)):
            if t:
                say("%-6s produced %d, processed %d, lost %d, duplicates %d"
                    % (side, t["produced"], t["processed"], t["lost"], t["duplicates"]))
    ratios = {}
    for name, _ in STEPS[1:]:
        u, g = u_steps.get(name, {}), g_steps.get(name, {})
        if u.get("gap_s") and g.get("gap_s"):
            ratios["gap_%s" % name.replace(" ", "_")] = round(g["gap_s"] / u["gap_s"], 2)
        if u.get("settled_s") and g.get("settled_s"):
            ratios["settled_%s" % name.replace(" ", "_")] = round(g["settled_s"] / u["settled_s"], 2)
    line = {"bench": "scale", "rate": args.rate, "partitions": PARTITIONS, "broker": broker, "skipped": skipped,
            "ukko": ukko, "group": group, "group_over_ukko": ratios or None}
    if not skipped:
        say("group / ukko: %s" % json.dumps(ratios))
    say(json.dumps(line, separators=(",", ":")))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--ukko", default=os.path.join(REPO, "build", "ukko"))
    p.add_argument("--baseline", default=os.path.join(REPO, "build", "tests", "bench", "bench_kafka_baseline"),
                   help="bench_kafka_baseline, whose --member mode is a group member")
    p.add_argument("--rate", type=int, default=None, help="records/s produced (1000; --quick 300)")
    p.add_argument("--hold", type=float, default=None, help="seconds watched after each step settled (5; --quick 2)")
    p.add_argument("--strategy", default="cooperative-sticky", help="the group's assignment strategy")
    p.add_argument("--pod-addresses", default="127.0.8.21-127.0.8.40")
    p.add_argument("--quick", action="store_true", help="a smoke run: lower rate, shorter holds")
    a = p.parse_args(argv)
    a.rate = a.rate or (300 if a.quick else 1000)
    a.hold = a.hold if a.hold is not None else (2.0 if a.quick else 5.0)
    return a


def main(argv):
    a = parse_args(argv)
    a.kcat = shutil.which("kcat")
    if a.kcat is None:
        say("SKIPPED: kcat is not installed (the producer and the readers; scripts/install-deps.sh)")
        report(a, None, None, None, "no kcat")
        return 0
    for what, path in (("--ukko", a.ukko), ("--baseline", a.baseline)):
        if not os.access(path, os.X_OK):
            say("bench_scale: %s %s is not built (cmake --build build)" % (what, path))
            return 1
    dargs = demo.parse_args(["--ukko", a.ukko, "--pod-addresses", a.pod_addresses, "--rate", str(a.rate),
                             "--hold", str(a.hold), "--interval", "0.2"])
    try:
        rig = KafkaRig(topics={demo.TOPIC: PARTITIONS, demo.OUT_TOPIC: PARTITIONS, "orders.dlq": 1,
                               GROUP_TOPIC: PARTITIONS})
        rig.start()
    except KafkaUnavailable as e:
        say("SKIPPED: no real Kafka (%s)" % e.reason)
        report(a, None, None, None, e.reason)
        return 0
    failures = []
    ukko = group = broker = None
    root = tempfile.mkdtemp(prefix="ukko-bench-scale-")
    try:
        broker = os.environ.get("UKKO_KAFKA_VERSION", "4.1.1")  # broker.sh's default
        say("bench_scale: broker %s; ukko first (pods on %s), then the consumer group" % (rig.bootstrap,
                                                                                       a.pod_addresses))
        u = UkkoScale(dargs, rig.bootstrap)
        code = u.run()
        failures += u.failures if code else []
        if code:
            failures.append("ukko's run failed (exit %d)" % code)
        ukko = dict(totals(u.feed), steps=u.steps,
                    steady_gap_s=round(u.steady_gap[0], 3) if u.steady_gap else None)
        g = GroupScale(a, rig.bootstrap, root)
        g.run()
        failures += g.failures
        group = dict(totals(g.feed), steps=g.steps, strategy=a.strategy,
                     steady_gap_s=round(g.steady_gap[0], 3) if g.steady_gap else None)
    finally:
        rig.stop()
        left = demo.leftovers(root)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
    for side, t in (("ukko", ukko), ("group", group)):
        if t and t["lost"]:
            failures.append("%s lost %d record(s)" % (side, t["lost"]))
    report(a, broker, ukko, group)
    for f in failures:
        say("problem: %s" % f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
