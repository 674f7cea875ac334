#!/usr/bin/env python3
"""The split-brain resolver with real processes and a real network cut.

Five network namespaces hang off one Linux bridge by veth pairs, 10.77.0.1-5/24,
each running one `ukko` (the cluster port 7355 and management port 8558 of its
own address). Once they form one cluster, the veths of nodes 4 and 5 move to a
second bridge: 2 are cut off from 3, both ways, with nothing refused (the
packets just vanish). The 2 must down themselves and answer /ready 500, saying
why; the 3 must stay ready and hold the 2 Down; at no moment may both sides be
ready and hold the other Down. Then the veths move back (healed): the 2 stay
down until restarted, and then rejoin: all 5 ready again.

Needs root and network namespaces (ip from iproute2, curl); otherwise it prints
SKIPPED and exits 0. Everything it makes is named ukt<pid>... (links) or
ukt-<pid>-... (namespaces) and is removed at the end, on failure, on SIGTERM or
SIGINT; whatever an earlier run killed with SIGKILL left behind is removed at
the start (its pid is gone). The nodes die with this script (PR_SET_PDEATHSIG).
Conditions are polled with deadlines; no assertion is about how long anything
took. About a minute.

    sudo python3 tests/cluster/netns_split_brain.py build/ukko
"""

import atexit
import base64
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

N = 5
CUT = (4, 5)  # node numbers cut off from the rest
SUBNET = "10.77.0."
PID = os.getpid()
LINK = "ukt%d" % PID  # link names: at most 15 characters (IFNAMSIZ)
NS = "ukt-%d-" % PID

procs = {}  # node number -> Popen
tmp = None
logs = {}
cleaned = False


def sh(*args, check=True, quiet=False):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    if not quiet and r.returncode != 0:
        print("  (%s: %s)" % (" ".join(args), r.stderr.strip()))
    return r


def skip(why):
    print("SKIPPED: %s" % why)
    sys.exit(0)


def ns(i):
    return "%s%d" % (NS, i)


def host(i):
    return "%s%d" % (SUBNET, i)


def pid_alive(pid):
    """A process that exists and is not a zombie (a run killed by SIGKILL is
    one until its parent reaps it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def remove_namespace(name):
    """Kills what runs in a namespace, then deletes it."""
    r = sh("ip", "netns", "pids", name, check=False, quiet=True)
    for p in r.stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False, quiet=True)


def remove_stale():
    """What runs of this test killed by SIGKILL left: their pid is gone."""
    for line in sh("ip", "netns", "list", check=False, quiet=True).stdout.splitlines():
        m = re.match(r"ukt-(\d+)-\S+", line)
        if m and int(m.group(1)) != PID and not pid_alive(int(m.group(1))):
            print("removing namespace %s left by an earlier run" % m.group(0))
            remove_namespace(m.group(0))
    for line in sh("ip", "-o", "link", "show", check=False, quiet=True).stdout.splitlines():
        m = re.match(r"\d+: (ukt(\d+)[bv]\d+)[@:]", line)
        if m and int(m.group(2)) != PID and not pid_alive(int(m.group(2))):
            print("removing link %s left by an earlier run" % m.group(1))
            sh("ip", "link", "del", m.group(1), check=False, quiet=True)


def cleanup():
    global cleaned
    if cleaned:
        return
    cleaned = True
    for p in procs.values():
        if p.poll() is None:
            p.kill()
    for p in procs.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for i in range(1, N + 1):
        sh("ip", "link", "del", "%sv%d" % (LINK, i), check=False, quiet=True)
        remove_namespace(ns(i))
    for b in ("b0", "b1"):
        sh("ip", "link", "del", LINK + b, check=False, quiet=True)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    left = [l for l in sh("ip", "-o", "link", "show", check=False, quiet=True).stdout.splitlines()
            if LINK in l]
    left += [l for l in sh("ip", "netns", "list", check=False, quiet=True).stdout.splitlines()
             if l.startswith(NS)]
    if left:
        print("cleanup: still there (the kernel may take a moment): %s" % left)


def on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


def set_pdeathsig():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the node dies with this script


def start(i, ukko):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
    env.update({
        "UKKO_MANAGEMENT_HOSTNAME": host(i),
        "UKKO_MANAGEMENT_PORT": "8558",
        "UKKO_CLUSTER_HOSTNAME": host(i),
        "UKKO_CLUSTER_SEED_NODES": "%s:7355,%s:7355" % (host(1), host(2)),
        "UKKO_CLUSTER_KEYRING_PATH": os.path.join(tmp, "keyring.json"),
        "UKKO_LOG_FORMAT": "text",
        # A short stable-after keeps the test short; the rest is as shipped.
        "UKKO_CLUSTER_SPLIT_BRAIN_RESOLVER_STABLE_AFTER": "3s",
        # The downed side is looked at after the heal, so it stays up (not ready)
        # instead of exiting as a shipped node does.
        "UKKO_CLUSTER_RUN_COORDINATED_SHUTDOWN_WHEN_DOWN": "false",
    })
    log = open(logs[i], "a")
    procs[i] = subprocess.Popen(["ip", "netns", "exec", ns(i), ukko, "run"], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=set_pdeathsig)
    log.close()


def http(i, path):
    """GET http://10.77.0.i:8558/path from inside node i's namespace:
    (status or None, body)."""
    r = subprocess.run(["ip", "netns", "exec", ns(i), "curl", "-s", "-m", "2", "-w",
                        "\n%{http_code}", "http://%s:8558%s" % (host(i), path)],
                       capture_output=True, text=True)
    body, _, code = r.stdout.rpartition("\n")
    return (int(code) if code.isdigit() and code != "000" else None), body


def members(i):
    """Node i's view: {address: status} (None when it does not answer)."""
    st, body = http(i, "/cluster/members")
    if st != 200:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return {m["node"].rsplit("@", 1)[1].split(":")[0]: m["status"] for m in doc["members"]}


def metric(i, name, labels):
    st, body = http(i, "/metrics")
    for line in body.splitlines() if st == 200 else []:
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return None


def wait_for(what, timeout, check):
    """Polls check() (which returns (ok, seen)) until ok, or fails saying
    what was last seen."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        ok, seen = check()
        if ok:
            return seen
        time.sleep(0.3)
    raise AssertionError("%s: not within %ds; last seen: %s" % (what, timeout, seen))


def ready(i):
    return http(i, "/ready")


def all_ready():
    seen = {i: ready(i)[0] for i in range(1, N + 1)}
    view = members(1)
    ok = all(s == 200 for s in seen.values()) and view is not None and len(view) == N and \
        all(s == "Up" for s in view.values())
    return ok, {"ready": seen, "node 1 sees": view}


def move(i, bridge):
    sh("ip", "link", "set", "%sv%d" % (LINK, i), "master", LINK + bridge)


def main():
    global tmp
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: netns_split_brain.py PATH/TO/ukko", file=sys.stderr)
        return 2
    ukko = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("needs root to make network namespaces (run it with sudo)")
    for tool in ("ip", "curl"):
        if not shutil.which(tool):
            skip("needs %s (scripts/install-deps.sh installs iproute2 and curl)" % tool)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup)
    remove_stale()
    r = sh("ip", "netns", "add", ns(1), check=False, quiet=True)
    if r.returncode != 0:
        skip("cannot make a network namespace here: %s" % r.stderr.strip())
    # Made is not usable: in a chroot whose / is no mount point, `ip -n`
    # cannot enter the namespace ("mount --make-rslave /" fails).
    r = sh("ip", "-n", ns(1), "link", "set", "lo", "up", check=False, quiet=True)
    if r.returncode != 0:
        skip("cannot enter a network namespace here (a chroot without its own mounts?): %s"
             % r.stderr.strip())

    tmp = tempfile.mkdtemp(prefix="ukko-netns-")
    with open(os.path.join(tmp, "keyring.json"), "w") as f:
        json.dump([base64.b64encode(os.urandom(32)).decode()], f)
    for b in ("b0", "b1"):
        sh("ip", "link", "add", LINK + b, "type", "bridge")
        sh("ip", "link", "set", LINK + b, "up")
    for i in range(1, N + 1):
        if i > 1:
            sh("ip", "netns", "add", ns(i))
        v = "%sv%d" % (LINK, i)
        sh("ip", "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns(i))
        sh("ip", "-n", ns(i), "addr", "add", host(i) + "/24", "dev", "eth0")
        sh("ip", "-n", ns(i), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(i), "link", "set", "lo", "up")
        sh("ip", "link", "set", v, "master", LINK + "b0")
        sh("ip", "link", "set", v, "up")
        logs[i] = os.path.join(tmp, "node%d.log" % i)

    try:
        for i in range(1, N + 1):
            start(i, ukko)
        seen = wait_for("5 nodes form one cluster, every one ready", 60, all_ready)
        print("formed: %s" % seen)

        # The cut: nodes 4 and 5 to the other bridge, both ways.
        t_cut = time.monotonic()
        for i in CUT:
            move(i, "b1")
        print("cut %s off from %s" % (CUT, tuple(i for i in range(1, N + 1) if i not in CUT)))

        def resolved():
            rd = {i: ready(i) for i in range(1, N + 1)}
            views = {i: members(i) for i in range(1, N + 1)}
            # Never both sides: a node of the 2 that is still ready must not
            # hold any of the 3 Down (and the same the other way round).
            for i in CUT:
                if rd[i][0] == 200 and views[i]:
                    for j in range(1, N + 1):
                        if j not in CUT and views[i].get(host(j)) in ("Down", "Removed"):
                            raise AssertionError("split brain: node %d is ready and holds node %d "
                                                 "Down: %s" % (i, j, views[i]))
            ok = all(rd[i][0] == 500 and "split-brain resolver" in rd[i][1] for i in CUT) and \
                all(rd[i][0] == 200 for i in range(1, N + 1) if i not in CUT) and \
                all(views[j] is not None and views[j].get(host(i)) in (None, "Down")
                    for j in range(1, N + 1) if j not in CUT for i in CUT)
            return ok, {"ready": {i: rd[i] for i in rd}, "views of the 3": {
                j: views[j] for j in range(1, N + 1) if j not in CUT}}

        seen = wait_for("the 2 down themselves and the 3 stay ready and hold them Down", 90,
                        resolved)
        print("resolved %.1f s after the cut: %s" % (time.monotonic() - t_cut, seen["ready"]))
        # It holds: a moment later the same (no flapping back).
        time.sleep(2)
        ok, seen = resolved()
        assert ok, "the resolution holds 2 s later: %s" % seen
        stayers = sum(metric(j, "ukko_cluster_sbr_decisions_total", '{decision="down-unreachable"}')
                      or 0 for j in range(1, N + 1) if j not in CUT)
        assert stayers == 1, "one decision on the side of the 3 (its leader's), saw %s" % stayers
        # The first of the 2 to decide downs the other with it (a side that
        # goes, goes as a whole); both may decide in the same moment.
        goers = {i: metric(i, "ukko_cluster_sbr_decisions_total", '{decision="down-reachable"}')
                 for i in CUT}
        assert all(d in (0, 1) for d in goers.values()) and \
            sum(d or 0 for d in goers.values()) >= 1, \
            "the 2 count one decision to go in /metrics, at most one each (saw %s)" % goers
        for i in CUT:
            with open(logs[i]) as f:
                assert "split-brain resolver" in f.read(), "node %d logs why it is down" % i

        # Healed: the 2 stay down (Down is final for a process)...
        for i in CUT:
            move(i, "b0")
        print("healed")
        time.sleep(5)
        for i in CUT:
            st = ready(i)[0]
            assert st == 500, "node %d, downed, stays not ready after the heal (saw %s)" % (i, st)
        for j in range(1, N + 1):
            if j not in CUT:
                assert ready(j)[0] == 200, "node %d stays ready after the heal" % j

        # ...and rejoin once restarted.
        for i in CUT:
            procs[i].send_signal(signal.SIGTERM)
        for i in CUT:
            try:
                procs[i].wait(timeout=15)
            except subprocess.TimeoutExpired:
                procs[i].kill()
                procs[i].wait()
            start(i, ukko)
        seen = wait_for("the 2, restarted, rejoin: 5 ready, all Up", 60, all_ready)
        print("rejoined: %s" % seen)
        print("PASSED")
        return 0
    except AssertionError as e:
        print("FAILED: %s" % e)
        for i in range(1, N + 1):
            with open(logs[i]) as f:
                tail = f.read().splitlines()[-25:]
            print("---- node %d (%s) log, last lines:\n%s" % (i, host(i), "\n".join(tail)))
        return 1
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
