#!/usr/bin/env python3
"""Cluster sharding across a real network cut: never two runners.

Five `ukko run --app counter` nodes in network namespaces on one bridge
(10.77.0.1-5, the rig of netns_split_brain.py, whose helpers this imports),
12 shards over them. Nodes 4 and 5 are cut off (their veths move to a second
bridge: packets vanish, nothing is refused). Checked every poll, about 4 times
a second: no shard is in the running shards (/cluster/shards/counter
"regions") of a node on one side and of a node on the other. The 2 down
themselves, stop their shards at once and exit non-zero (as shipped:
cluster.run-coordinated-shutdown-when-down); the 3 take every shard after
the down-removal margin. And, sharper than any poll, from the logs (one
clock: the namespaces share the host's): each of the 2 logged that it stops
every shard at once before the coordinator on the 3 moved the first of its
shards. Healed and restarted, the 2 rejoin and get shards again.

Needs root and network namespaces (ip, curl); otherwise it prints SKIPPED and
exits 0. Cleans up as netns_split_brain.py does. About a minute.

    sudo python3 tests/cluster/netns_sharding.py build/ukko
"""

import atexit
import base64
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_split_brain as nb  # noqa: E402  (the namespaces, bridges and cleanup)

N = nb.N
CUT = nb.CUT
SHARDS = 12


def start(i, ukko):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
    env.update({
        "UKKO_MANAGEMENT_HOSTNAME": nb.host(i),
        "UKKO_MANAGEMENT_PORT": "8558",
        "UKKO_CLUSTER_HOSTNAME": nb.host(i),
        "UKKO_CLUSTER_SEED_NODES": "%s:7355,%s:7355" % (nb.host(1), nb.host(2)),
        "UKKO_CLUSTER_KEYRING_PATH": os.path.join(nb.tmp, "keyring.json"),
        "UKKO_LOG_FORMAT": "text",
        "UKKO_CLUSTER_SPLIT_BRAIN_RESOLVER_STABLE_AFTER": "3s",
    })
    # For experiments: NETNS_NODE_ENV="UKKO_K=V,UKKO_K2=V2" is added to every node's environment.
    for kv in filter(None, os.environ.get("NETNS_NODE_ENV", "").split(",")):
        k, _, v = kv.partition("=")
        env[k] = v
    log = open(nb.logs[i], "a")
    nb.procs[i] = subprocess.Popen(["ip", "netns", "exec", nb.ns(i), ukko, "run", "--app",
                                    "counter"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=nb.set_pdeathsig)
    log.close()


def shards(i):
    """Node i's /cluster/shards/counter, parsed, or None."""
    st, body = nb.http(i, "/cluster/shards/counter")
    if st != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def running(doc):
    return {int(r["shardId"]) for r in doc["regions"]}


def table_by_node(doc):
    """{node number: set of shards} from a table, or None when not whole."""
    if doc["unallocated"] or doc["handingOff"]:
        return None
    by = {}
    for reg in doc["clusterRegions"]:
        node = int(reg["shardRegion"].rsplit("@", 1)[1].split(":")[0].rsplit(".", 1)[1])
        by[node] = {int(s) for s in reg["shards"]}
    if sum(len(v) for v in by.values()) != SHARDS:
        return None
    return by


def check_one_runner(side_a, side_b):
    """Asks every node of both sides what it runs; fails if a shard runs on
    both sides. Returns {node: running shards} of those that answered."""
    seen = {}
    for i in side_a + side_b:
        if nb.procs[i].poll() is not None:
            continue
        doc = shards(i)
        if doc is not None:
            seen[i] = running(doc)
    a = set().union(*[seen[i] for i in side_a if i in seen])
    b = set().union(*[seen[i] for i in side_b if i in seen])
    both = a & b
    if both:
        raise AssertionError("shards %s run on both sides of the cut: %s" % (sorted(both), seen))
    return seen


def log_time(line):
    """The wall-clock time (seconds) of a text log line, or None."""
    try:
        t = datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def first_line(i, after, pattern):
    """(time, line) of the first line of node i's log at or after `after`
    that matches pattern, or (None, None)."""
    with open(nb.logs[i]) as f:
        for line in f:
            t = log_time(line)
            if t is not None and t >= after and re.search(pattern, line):
                return t, line.rstrip()
    return None, None


def check_stopped_before_moved(go, stay, owned, after):
    """Each node of go that ran shards logged its stop at once before any
    node of stay logged the first move of one of them: the ordering the
    margin exists for, read from the logs rather than seen by polling."""
    for i in go:
        if not owned.get(i):
            continue
        t_stop, _ = first_line(i, after, r"this node was downed: every shard stops at once")
        assert t_stop is not None, "node %d logs that it stops every shard at once" % i
        moves = []
        for j in stay:
            pat = r"sharding: shard counter/(%s) (moved from \S*@%s:|allocated to)" % (
                "|".join(str(s) for s in sorted(owned[i])), re.escape(nb.host(i)))
            t, line = first_line(j, after, pat)
            if t is not None:
                moves.append((t, j, line))
        assert moves, "the 3 log moving node %d's shards %s" % (i, sorted(owned[i]))
        t_move, j, line = min(moves)
        assert t_stop < t_move, (
            "node %d stopped its shards at %.3f, after node %d moved one at %.3f: %s"
            % (i, t_stop, j, t_move, line))
        print("node %d stopped its shards %.3f s before the first of them moved (node %d)"
              % (i, t_move - t_stop, j))


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: netns_sharding.py PATH/TO/ukko", file=sys.stderr)
        return 2
    ukko = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        nb.skip("needs root to make network namespaces (run it with sudo)")
    for tool in ("ip", "curl"):
        if not shutil.which(tool):
            nb.skip("needs %s (scripts/install-deps.sh installs iproute2 and curl)" % tool)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, nb.on_signal)
    atexit.register(nb.cleanup)
    nb.remove_stale()
    r = nb.sh("ip", "netns", "add", nb.ns(1), check=False, quiet=True)
    if r.returncode != 0:
        nb.skip("cannot make a network namespace here: %s" % r.stderr.strip())
    r = nb.sh("ip", "-n", nb.ns(1), "link", "set", "lo", "up", check=False, quiet=True)
    if r.returncode != 0:
        nb.skip("cannot enter a network namespace here (a chroot without its own mounts?): %s"
                % r.stderr.strip())
    nb.tmp = tempfile.mkdtemp(prefix="ukko-netns-sharding-")
    with open(os.path.join(nb.tmp, "keyring.json"), "w") as f:
        json.dump([base64.b64encode(os.urandom(32)).decode()], f)
    for b in ("b0", "b1"):
        nb.sh("ip", "link", "add", nb.LINK + b, "type", "bridge")
        nb.sh("ip", "link", "set", nb.LINK + b, "up")
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

    stay = [i for i in range(1, N + 1) if i not in CUT]
    go = list(CUT)
    try:
        for i in range(1, N + 1):
            start(i, ukko)
        nb.wait_for("5 nodes form one cluster, every one ready", 60, nb.all_ready)

        def whole(nodes):
            """A whole table on nodes[0] over exactly these nodes, balanced."""
            def check():
                doc = shards(nodes[0])
                by = table_by_node(doc) if doc else None
                if by is None or not set(by) <= set(nodes):
                    return False, by
                lo, hi = SHARDS // len(nodes), -(-SHARDS // len(nodes))
                return all(lo <= len(by.get(i, ())) <= hi for i in nodes), by
            return check

        by = nb.wait_for("12 shards over the 5 nodes", 60, whole(list(range(1, N + 1))))
        print("allocated: %s" % {k: sorted(v) for k, v in by.items()})
        owned = check_one_runner(stay, go)

        t_cut = time.monotonic()
        wall_cut = time.time()
        for i in CUT:
            nb.move(i, "b1")
        print("cut %s off from %s" % (go, stay))

        def resolved():
            seen = check_one_runner(stay, go)
            exited = {i: nb.procs[i].poll() for i in go}
            doc = shards(stay[0])
            by = table_by_node(doc) if doc else None
            ok = all(c is not None for c in exited.values()) and by is not None and \
                set(by) <= set(stay) and sum(len(seen.get(i, ())) for i in stay) == SHARDS
            return ok, {"running": {k: sorted(v) for k, v in seen.items()}, "exit codes": exited}

        deadline = time.monotonic() + 90
        seen = None
        while True:
            ok, seen = resolved()
            if ok:
                break
            if time.monotonic() > deadline:
                raise AssertionError("not resolved within 90 s: %s" % seen)
            time.sleep(0.25)
        print("resolved %.1f s after the cut: %s" % (time.monotonic() - t_cut, seen))
        for i in go:
            code = nb.procs[i].poll()
            assert code not in (None, 0), "node %d, downed, exits non-zero (got %s)" % (i, code)
            with open(nb.logs[i]) as f:
                assert "this node was downed" in f.read(), "node %d says why it stops" % i
        check_stopped_before_moved(go, stay, owned, wall_cut)

        for i in CUT:
            nb.move(i, "b0")
            start(i, ukko)
        print("healed; the 2 restarted")
        nb.wait_for("the 2 rejoin: 5 ready, all Up", 60, nb.all_ready)
        by = nb.wait_for("12 shards over the 5 nodes again", 60, whole(list(range(1, N + 1))))
        check_one_runner(stay, go)
        print("rebalanced: %s" % {k: sorted(v) for k, v in by.items()})
        print("PASSED")
        return 0
    except AssertionError as e:
        print("FAILED: %s" % e)
        for i in range(1, N + 1):
            with open(nb.logs[i]) as f:
                tail = f.read().splitlines()[-25:]
            print("---- node %d (%s) log, last lines:\n%s" % (i, nb.host(i), "\n".join(tail)))
        return 1
    finally:
        nb.cleanup()


if __name__ == "__main__":
    sys.exit(main())
