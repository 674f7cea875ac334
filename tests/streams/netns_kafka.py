#!/usr/bin/env python3
"""Kafka-fed shards across a real network cut: the downed side stops processing
before the other side takes its partitions.

Five `ukko run --app orders` nodes in network namespaces on one bridge
(10.77.0.1-5, the rig of tests/cluster/netns_split_brain.py, whose helpers
this imports with those of netns_sharding.py), a real Kafka broker
(tests/kafka/kafka_rig.py) listening on 10.77.0.254, an address of the bridge
on the host side, `orders` and `orders-processed` of 12 partitions, orders
produced by kcat (murmur2, keyed by customer) at a steady rate all along.
Nodes 4 and 5 are cut off from the 3 (their veths move to a second bridge,
packets to their peers vanish) but not from Kafka: the host routes their
addresses through the second bridge, so they could go on fetching, producing
and committing. That is the dangerous case: nothing but the cluster stops a
stale owner. Then healed, the 2 restarted, and the feed drained.

Checked from the topics themselves, once everything is committed:
- every (partition, offset) of `orders` is in `orders-processed` (nothing lost);
- per partition, in output order (the nodes produce with kafka.properties
  partitioner=murmur2_random, so an output record sits in its source
  partition), the `node` values form runs, and no node incarnation comes back
  to a partition after another one took it: never A, B, A (a downed node's
  records after its takeover would be exactly that);
- a (partition, offset) handled twice was first handled by a downed node (after
  its last commit) and such repeats are at most kafka.commit.max-batch per
  partition; their count is printed;
- the 2 exit non-zero, saying they were downed (as shipped:
  cluster.run-coordinated-shutdown-when-down), and no shard runs on both sides
  at any poll (/cluster/shards/orders, as netns_sharding.py checks).
Printed: records, repeats, the time from the cut to the downed side's last
output and to the 3's first output on a partition they took over.

Needs root, network namespaces (ip, curl), kcat, and a real Kafka (Java 17,
Maven or the cached jars); otherwise it prints SKIPPED and exits 0. Cleans up
as netns_split_brain.py does (namespaces, links, nodes, temp folders), plus
the producer and the broker, on failure, SIGTERM and SIGINT too. About 40 s
once the broker's jars are cached.

    sudo python3 tests/streams/netns_kafka.py build/ukko
"""

import atexit
import base64
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "kafka"))
import netns_split_brain as nb  # noqa: E402  (namespaces, bridges, cleanup)
import netns_sharding as nsh  # noqa: E402  (shard tables, one runner per shard)
from kafka_rig import KafkaRig, KafkaUnavailable  # noqa: E402

N = nb.N
CUT = nb.CUT
PARTS = nsh.SHARDS  # shards of a Kafka-fed type = partitions of its topic
BROKER = nb.SUBNET + "254"  # on the host side of the bridge
RATE = 500  # orders per second, all along
MAX_BATCH = 200  # kafka.commit.max-batch: the bound of repeats per partition
STAY = [i for i in range(1, N + 1) if i not in CUT]

rig = None
done = False


def cleanup():
    global done
    if done:
        return
    done = True
    for name in ("producer", "kcat"):
        p = nb.procs.get(name)
        if p and p.poll() is None:
            p.kill()
    if rig is not None:
        rig.stop()
    nb.cleanup()


def on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


def start(i, ukko, bootstrap):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
    env.update({
        "UKKO_MANAGEMENT_HOSTNAME": nb.host(i),
        "UKKO_MANAGEMENT_PORT": "8558",
        "UKKO_CLUSTER_HOSTNAME": nb.host(i),
        "UKKO_CLUSTER_SEED_NODES": "%s:7355,%s:7355" % (nb.host(1), nb.host(2)),
        "UKKO_CLUSTER_KEYRING_PATH": os.path.join(nb.tmp, "keyring.json"),
        "UKKO_LOG_FORMAT": "text",
        "UKKO_CLUSTER_SPLIT_BRAIN_RESOLVER_STABLE_AFTER": "3s",
        "UKKO_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "UKKO_KAFKA_COMMIT_MAX_BATCH": str(MAX_BATCH),
        "UKKO_KAFKA_COMMIT_MAX_INTERVAL": "500ms",
        # Output records land in their source partition, so one output
        # partition orders everything done for one input partition.
        "UKKO_KAFKA_PROPERTIES": '{"partitioner": "murmur2_random"}',
    })
    log = open(nb.logs[i], "a")
    nb.procs[i] = subprocess.Popen(["ip", "netns", "exec", nb.ns(i), ukko, "run", "--app",
                                    "orders"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=nb.set_pdeathsig)
    log.close()


def produce_start(bootstrap):
    """produce_orders.py | kcat at RATE/s until produce_stop()."""
    log = open(os.path.join(nb.tmp, "producer.log"), "a")
    gen = subprocess.Popen([sys.executable, os.path.join(HERE, "produce_orders.py"),
                            "100000000", str(RATE), "0"], stdout=subprocess.PIPE,
                           stderr=log, preexec_fn=nb.set_pdeathsig)
    nb.procs["producer"] = gen
    nb.procs["kcat"] = subprocess.Popen(["kcat", "-P", "-b", bootstrap, "-t", "orders", "-K",
                                         "\t", "-X", "partitioner=murmur2_random"],
                                        stdin=gen.stdout, stdout=log, stderr=log,
                                        preexec_fn=nb.set_pdeathsig)
    gen.stdout.close()
    log.close()


def produce_stop():
    """Ends the generator (whole lines only reach the pipe); kcat then flushes
    and exits at the end of its input."""
    nb.procs["producer"].terminate()
    nb.procs["producer"].wait(timeout=10)
    rc = nb.procs["kcat"].wait(timeout=60)
    assert rc == 0, "kcat, producing, exits 0 (got %d; %s/producer.log)" % (rc, nb.tmp)


def read_topic(fmt, topic):
    r = rig.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt, timeout=120)
    assert r.returncode == 0, "kcat reading %s: %s" % (topic, r.stderr.strip())
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def outputs():
    """[(out partition, out offset, timestamp ms, value dict)] of orders-processed."""
    return [(int(p), int(o), int(t), json.loads(v))
            for p, o, t, v in read_topic("%p\t%o\t%T\t%s\n", "orders-processed")]


def ends(topic):
    """{partition: end offset} of a topic, from the broker (kcat -Q, time -1).
    Reading to the end with kcat -e would not end while records keep coming."""
    args = []
    for p in range(PARTS):
        args += ["-t", "%s:%d:-1" % (topic, p)]
    r = rig.kcat("-Q", *args, timeout=60)
    got = {int(m.group(1)): int(m.group(2))
           for m in re.finditer(r"\[(\d+)\]\s+offset\s+(-?\d+)", r.stdout)}
    assert len(got) == PARTS, "kcat -Q %s: %s %s" % (topic, r.stdout.strip(), r.stderr.strip())
    return got


def wait_outputs(more, timeout, what):
    base = sum(ends("orders-processed").values())
    nb.wait_for(what, timeout,
                lambda: (lambda c: (c >= base + more, "%d output records" % c))(
                    sum(ends("orders-processed").values())))


def node_of(value):
    return int(value["node"].split(":")[0].rsplit(".", 1)[1])


def cut_route(i, cut):
    """Node i's veth is on the second bridge (cut) or back on the first: the
    host reaches it (and so the broker answers it) through that bridge."""
    link = nb.LINK + ("b1" if cut else "b0")
    if cut:
        nb.sh("ip", "route", "replace", nb.host(i) + "/32", "dev", link)
    else:
        nb.sh("ip", "route", "del", nb.host(i) + "/32", check=False, quiet=True)
    # Stale neighbour entries would send the node's frames to the other
    # bridge's MAC, where nothing answers them.
    nb.sh("ip", "neigh", "flush", "to", nb.host(i), check=False, quiet=True)
    nb.sh("ip", "-n", nb.ns(i), "neigh", "flush", "dev", "eth0", check=False, quiet=True)


def setup_network():
    with open(os.path.join(nb.tmp, "keyring.json"), "w") as f:
        json.dump([base64.b64encode(os.urandom(32)).decode()], f)
    for b in ("b0", "b1"):
        nb.sh("ip", "link", "add", nb.LINK + b, "type", "bridge")
        nb.sh("ip", "link", "set", nb.LINK + b, "up")
    nb.sh("ip", "addr", "add", BROKER + "/24", "dev", nb.LINK + "b0")
    for i in range(1, N + 1):
        if i > 1:
            nb.sh("ip", "netns", "add", nb.ns(i))
        v = "%sv%d" % (nb.LINK, i)
        nb.sh("ip", "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", nb.ns(i))
        nb.sh("ip", "-n", nb.ns(i), "addr", "add", nb.host(i) + "/24", "dev", "eth0")
        nb.sh("ip", "-n", nb.ns(i), "link", "set", "eth0", "up")
        nb.sh("ip", "-n", nb.ns(i), "link", "set", "lo", "up")
        nb.sh("ip", "link", "set", v, "master", nb.LINK + "b0")
        nb.sh("ip", "link", "set", v, "up")
        nb.logs[i] = os.path.join(nb.tmp, "node%d.log" % i)


def broker_reachable_from(i, bootstrap):
    r = subprocess.run(["ip", "netns", "exec", nb.ns(i), "kcat", "-L", "-b", bootstrap, "-t",
                        "orders", "-m", "5"], capture_output=True, text=True)
    return r.returncode == 0


def whole(nodes):
    """A whole, balanced table of shards over exactly these nodes, on nodes[0]."""
    def check():
        st, body = nb.http(nodes[0], "/cluster/shards/orders")
        try:
            by = nsh.table_by_node(json.loads(body)) if st == 200 else None
        except ValueError:
            by = None
        if by is None or not set(by) <= set(nodes):
            return False, by
        lo, hi = PARTS // len(nodes), -(-PARTS // len(nodes))
        return all(lo <= len(by.get(i, ())) <= hi for i in nodes), by
    return check


def one_runner():
    """No shard running on both sides (netns_sharding.py's check, for orders)."""
    seen = {}
    for i in range(1, N + 1):
        if nb.procs[i].poll() is not None:
            continue
        st, body = nb.http(i, "/cluster/shards/orders")
        try:
            if st == 200:
                seen[i] = nsh.running(json.loads(body))
        except ValueError:
            pass
    a = set().union(*[seen[i] for i in STAY if i in seen])
    b = set().union(*[seen[i] for i in CUT if i in seen])
    assert not a & b, "shards %s run on both sides of the cut: %s" % (sorted(a & b), seen)
    return seen


def check_records(t_cut_ms, t_restart_ms):
    """The checks on the topics; returns the figures."""
    ins = {(int(p), int(o)) for p, o in read_topic("%p\t%o\n", "orders")}
    outs = outputs()
    handled = collections.defaultdict(list)  # (p, o) -> [(incarnation label, ts)]
    by_part = collections.defaultdict(list)  # output partition -> [(offset, label, ts)]
    for p, o, ts, v in outs:
        sp, so, node = v["source_partition"], v["source_offset"], node_of(v)
        assert sp == p, ("output record %d/%d of source partition %d: not in its source "
                         "partition (kafka.properties partitioner not applied?)" % (p, o, sp))
        # A cut node's address names two processes: before and after its restart.
        label = "%d%s" % (node, "'" if node in CUT and ts >= t_restart_ms else "")
        handled[(sp, so)].append((label, ts))
        by_part[p].append((o, label, ts))
    lost = sorted(ins - set(handled))
    assert not lost, "%d orders never processed, first %s" % (len(lost), lost[:10])

    taken_after = []  # cut -> first output of a stayer on a partition a cut node had
    stopped_after = []  # cut -> last output of a cut node (old incarnation)
    for p, recs in sorted(by_part.items()):
        recs.sort()
        runs = []  # [label, first ts, last ts]
        for _, label, ts in recs:
            if runs and runs[-1][0] == label:
                runs[-1][2] = ts
            else:
                runs.append([label, ts, ts])
        labels = [r[0] for r in runs]
        # Consecutive runs differ by construction: a label in two runs is A, B, A.
        again = [lab for lab, c in collections.Counter(labels).items() if c > 1]
        assert not again, ("partition %d processed by two nodes at once: node(s) %s went on "
                           "after another took the partition; the nodes in output order: %s"
                           % (p, again, " -> ".join(labels)))
        for k, (lab, first, last) in enumerate(runs):
            if lab in ("%d" % c for c in CUT):
                stopped_after.append(last - t_cut_ms)
                if k + 1 < len(runs) and int(runs[k + 1][0].rstrip("'")) in STAY:
                    taken_after.append(runs[k + 1][1] - t_cut_ms)
    repeats = {k: v for k, v in handled.items() if len(v) > 1}
    per_part = collections.Counter(p for p, _ in repeats)
    for (p, o), hs in repeats.items():
        first = min(hs, key=lambda h: h[1])[0]
        assert first in ("%d" % c for c in CUT), (
            "order %d/%d handled %d times, first by node %s, not a downed one: %s"
            % (p, o, len(hs), first, hs))
    worst = max(per_part.values(), default=0)
    assert worst <= MAX_BATCH, ("%d orders of one partition handled twice: more than one commit "
                                "batch (%d): %s" % (worst, MAX_BATCH, dict(per_part)))
    return {"orders": len(ins), "outputs": len(outs),
            "repeated": sum(len(v) - 1 for v in repeats.values()),
            "repeats per partition": dict(sorted(per_part.items())),
            "downed side's last output after the cut (s)":
                max(stopped_after) / 1000 if stopped_after else None,
            "3's first output on a taken partition after the cut (s)":
                [min(taken_after) / 1000, max(taken_after) / 1000] if taken_after else None}


def main():
    global rig
    sys.stdout.reconfigure(line_buffering=True)
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: netns_kafka.py PATH/TO/ukko", file=sys.stderr)
        return 2
    ukko = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        nb.skip("needs root to make network namespaces (run it with sudo)")
    for tool in ("ip", "curl", "kcat"):
        if not shutil.which(tool):
            nb.skip("needs %s (scripts/install-deps.sh installs iproute2, curl and kcat)" % tool)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup)
    nb.remove_stale()
    r = nb.sh("ip", "netns", "add", nb.ns(1), check=False, quiet=True)
    if r.returncode != 0:
        nb.skip("cannot make a network namespace here: %s" % r.stderr.strip())
    r = nb.sh("ip", "-n", nb.ns(1), "link", "set", "lo", "up", check=False, quiet=True)
    if r.returncode != 0:
        nb.skip("cannot enter a network namespace here (a chroot without its own mounts?): %s"
                % r.stderr.strip())
    nb.tmp = tempfile.mkdtemp(prefix="ukko-netns-kafka-")
    setup_network()
    rig = KafkaRig(host=BROKER, topics={"orders": PARTS, "orders-processed": PARTS})
    try:
        bootstrap = rig.start()
    except KafkaUnavailable as e:
        cleanup()
        nb.skip("no real Kafka (%s)" % e.reason)

    try:
        for i in range(1, N + 1):
            start(i, ukko, bootstrap)
        nb.wait_for("5 nodes form one cluster, every one ready", 90, nb.all_ready)
        by = nb.wait_for("12 partitions over the 5 nodes", 90, whole(list(range(1, N + 1))))
        print("allocated: %s" % {k: sorted(v) for k, v in by.items()})
        produce_start(bootstrap)
        wait_outputs(2000, 120, "2,000 orders processed before the cut")

        t_cut = time.monotonic()
        t_cut_ms = int(time.time() * 1000)
        for i in CUT:
            nb.move(i, "b1")
            cut_route(i, True)
        print("cut %s off from %s; Kafka still reachable from both sides" % (list(CUT), STAY))
        for i in (CUT[0], STAY[0]):
            assert broker_reachable_from(i, bootstrap), \
                "node %d's namespace reaches the broker after the cut" % i

        def resolved():
            seen = one_runner()
            exited = {i: nb.procs[i].poll() for i in CUT}
            ok, by = whole(STAY)()
            ok = ok and all(c is not None for c in exited.values()) and \
                sum(len(seen.get(i, ())) for i in STAY) == PARTS
            return ok, {"running": {k: sorted(v) for k, v in seen.items()}, "exit codes": exited}

        seen = nb.wait_for("the 2 exit, the 3 run every partition", 90, resolved)
        t_resolved = time.monotonic() - t_cut
        print("resolved %.1f s after the cut: %s" % (t_resolved, seen))
        for i in CUT:
            code = nb.procs[i].poll()
            assert code not in (None, 0), "node %d, downed, exits non-zero (got %s)" % (i, code)
            with open(nb.logs[i]) as f:
                assert "this node was downed" in f.read(), "node %d says why it stops" % i
        wait_outputs(2000, 120, "2,000 more orders processed by the 3")

        t_restart_ms = int(time.time() * 1000)
        for i in CUT:
            nb.move(i, "b0")
            cut_route(i, False)
            start(i, ukko, bootstrap)
        print("healed; the 2 restarted")
        nb.wait_for("the 2 rejoin: 5 ready, all Up", 90, nb.all_ready)
        nb.wait_for("12 partitions over the 5 nodes again", 90, whole(list(range(1, N + 1))))
        one_runner()
        wait_outputs(2000, 120, "2,000 more orders processed by the 5")
        produce_stop()

        # Drained: at least as many outputs as orders, and no new output for
        # a few polls (the feed keeps up, so the tail is short).
        last = []

        def drained():
            n_in = sum(ends("orders").values())
            n_out = sum(ends("orders-processed").values())
            last.append(n_out)
            ok = n_out >= n_in and len(last) >= 4 and len(set(last[-4:])) == 1
            return ok, "%d output records for %d orders" % (n_out, n_in)

        nb.wait_for("every order processed", 180, drained)
        figures = check_records(t_cut_ms, t_restart_ms)
        figures["cut to the 3 running every partition (s, polled)"] = round(t_resolved, 1)
        print("figures: %s" % json.dumps(figures))
        print("PASSED")
        return 0
    except AssertionError as e:
        print("FAILED: %s" % e)
        for i in range(1, N + 1):
            with open(nb.logs[i]) as f:
                tail = f.read().splitlines()[-25:]
            print("---- node %d (%s) log, last lines:\n%s" % (i, nb.host(i), "\n".join(tail)))
        if os.environ.get("UKKO_TEST_KEEP"):
            keep = tempfile.mkdtemp(prefix="ukko-netns-kafka-logs-")
            for i in range(1, N + 1):
                shutil.copy(nb.logs[i], keep)
            print("logs kept in %s" % keep)
        return 1
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
