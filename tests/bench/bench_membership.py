#!/usr/bin/env python3
"""bench_membership: ukko's membership against HashiCorp serf (memberlist, LAN
profile), side by side on loopback, both encrypted with the same key.

For each: time to form 5 and 20 members (every node sees all alive/Up), time
until every other node holds a kill -9'ed member failed/Down, the same for a
SIGSTOPped one, and false deaths when a member is paused for 2 s. Prints a line
per measurement, then one JSON line with both sides and the ratios (serf / ukko:
above 1 means ukko is faster).

ukko nodes use 127.0.2.x, serf agents 127.0.3.x. Every process started here is
killed on exit, whatever happens. Usage:
    tests/bench/bench_membership.py [--ukko build/ukko] [--serf serf] [--runs 3]
"""
import argparse
import atexit
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PROCS = []
TMP = tempfile.mkdtemp(prefix="ukko-bench-")


def cleanup():
    for p in PROCS:
        try:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(timeout=5)
        except Exception:
            pass
    shutil.rmtree(TMP, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def spawn(argv, env, log):
    p = subprocess.Popen(argv, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop_all(procs):
    for p in procs:
        try:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(timeout=5)
        except Exception:
            pass


# ----------------------------------------------------------------- ukko

class Ukko:
    name = "ukko"

    def __init__(self, binary, key):
        self.binary = binary
        self.ring = os.path.join(TMP, "keyring.json")
        with open(self.ring, "w") as f:
            json.dump([key], f)

    def host(self, i):
        return "127.0.2.%d" % (i + 1)

    def start(self, i, n):
        env = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
        env.update({
            "UKKO_MANAGEMENT_HOSTNAME": self.host(i),
            "UKKO_MANAGEMENT_PORT": "8558",
            "UKKO_CLUSTER_HOSTNAME": self.host(i),
            "UKKO_CLUSTER_SEED_NODES": self.host(0) + ":7355",
            "UKKO_CLUSTER_KEYRING_PATH": self.ring,
            "UKKO_LOG_LEVEL": "warn",
        })
        return spawn([self.binary, "run"], env, os.path.join(TMP, "ukko-%d.log" % i))

    def view(self, i):
        """{node address: status} as node i sees it, or None."""
        try:
            with urllib.request.urlopen("http://%s:8558/cluster/members" % self.host(i),
                                        timeout=1) as r:
                j = json.load(r)
        except Exception:
            return None
        return {m["node"].split("@", 1)[1].rsplit(":", 1)[0]: m["status"] for m in j["members"]}

    alive = ("Up",)
    dead = ("Down", "Removed")


# ----------------------------------------------------------------- serf

class Serf:
    name = "serf"

    def __init__(self, binary, key):
        self.binary = binary
        self.key = key

    def host(self, i):
        return "127.0.3.%d" % (i + 1)

    def start(self, i, n):
        argv = [self.binary, "agent", "-node=n%d" % i, "-bind=%s:7946" % self.host(i),
                "-rpc-addr=%s:7373" % self.host(i), "-encrypt=" + self.key,
                "-log-level=warn", "-profile=lan"]
        if i:
            argv.append("-join=%s:7946" % self.host(0))
        return spawn(argv, dict(os.environ), os.path.join(TMP, "serf-%d.log" % i))

    def view(self, i):
        try:
            out = subprocess.run([self.binary, "members", "-rpc-addr=%s:7373" % self.host(i),
                                  "-format=json"], capture_output=True, timeout=2, check=True)
            j = json.loads(out.stdout)
        except Exception:
            return None
        return {m["addr"].rsplit(":", 1)[0]: m["status"] for m in j["members"]}

    alive = ("alive",)
    dead = ("failed", "left")


# ------------------------------------------------------------ measuring

def wait(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def all_alive(sys_, idx, n):
    hosts = {sys_.host(i) for i in range(n)}
    for i in idx:
        v = sys_.view(i)
        if v is None or {h for h, s in v.items() if s in sys_.alive} != hosts:
            return False
    return True


def form(sys_, n):
    """Starts n nodes; returns (procs, seconds until every node sees all n alive)."""
    t0 = time.monotonic()
    procs = [sys_.start(0, n)]
    time.sleep(0.2)  # the first node forms (or listens) before the others join it
    procs += [sys_.start(i, n) for i in range(1, n)]
    ok = wait(lambda: all_alive(sys_, range(n), n), 60, 0.05)
    return procs, (time.monotonic() - t0) if ok else None


def detect(sys_, n, victim, sig):
    """Kills/stops a member of a formed cluster; seconds until every other node
    holds it failed/Down (or None within 90 s)."""
    procs, formed = form(sys_, n)
    if formed is None:
        stop_all(procs)
        return None
    time.sleep(2)
    vh = sys_.host(victim)
    others = [i for i in range(n) if i != victim]
    t0 = time.monotonic()
    os.kill(procs[victim].pid, sig)

    def gone():
        for i in others:
            v = sys_.view(i)
            if v is None or v.get(vh, "absent") not in sys_.dead + ("absent",):
                return False
        return True

    ok = wait(gone, 90, 0.02)
    took = time.monotonic() - t0 if ok else None
    stop_all(procs)
    return took


def false_deaths(sys_, n, victim):
    """Pauses a member for 2 s; counts the nodes that ever held anyone dead
    over the next 15 s."""
    procs, formed = form(sys_, n)
    if formed is None:
        stop_all(procs)
        return None
    time.sleep(2)
    os.kill(procs[victim].pid, signal.SIGSTOP)
    resume = time.monotonic() + 2
    end = resume + 15
    resumed = False
    accusers = set()
    while time.monotonic() < end:
        if not resumed and time.monotonic() >= resume:
            os.kill(procs[victim].pid, signal.SIGCONT)
            resumed = True
        for i in range(n):
            if i == victim and not resumed:
                continue
            v = sys_.view(i)
            if v and any(s in sys_.dead for s in v.values()):
                accusers.add(i)
        time.sleep(0.1)
    stop_all(procs)
    return len(accusers)


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--ukko", default=os.path.join(here, "..", "..", "build", "ukko"))
    ap.add_argument("--serf", default=shutil.which("serf") or "serf")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--systems", default="ukko,serf", help="which to run (comma-separated)")
    a = ap.parse_args()
    if not os.access(a.ukko, os.X_OK):
        sys.exit("bench_membership: no ukko binary at %s (build first, or --ukko PATH)" % a.ukko)
    if not shutil.which(a.serf):
        sys.exit("bench_membership: serf not found: scripts/install-deps.sh --bench installs it")
    key = base64.b64encode(os.urandom(32)).decode()
    systems = [s for s in (Ukko(os.path.abspath(a.ukko), key), Serf(a.serf, key))
               if s.name in a.systems.split(",")]
    res = {}
    for s in systems:
        r = res[s.name] = {}
        for n in (5, 20):
            vals = []
            for _ in range(a.runs):
                procs, t = form(s, n)
                stop_all(procs)
                vals.append(t)
                time.sleep(0.5)
            r["form_%d_s" % n] = med(vals)
            print("%s: form %d: %s s (runs %s)" % (s.name, n, r["form_%d_s" % n], vals), flush=True)
        r["detect_kill9_s"] = med([detect(s, 5, 3, signal.SIGKILL) for _ in range(a.runs)])
        print("%s: detect kill -9: %s s" % (s.name, r["detect_kill9_s"]), flush=True)
        r["detect_sigstop_s"] = med([detect(s, 5, 3, signal.SIGSTOP) for _ in range(a.runs)])
        print("%s: detect SIGSTOP: %s s" % (s.name, r["detect_sigstop_s"]), flush=True)
        fd = [false_deaths(s, 5, 2) for _ in range(a.runs)]
        r["false_deaths_pause_2s"] = sum(x for x in fd if x is not None)
        print("%s: false deaths with a 2 s pause: %s" % (s.name, r["false_deaths_pause_2s"]),
              flush=True)

    if len(res) < 2:
        print(json.dumps({"bench": "membership", "runs": a.runs, **res}), flush=True)
        return

    def ratio(k):
        u, s = res["ukko"].get(k), res["serf"].get(k)
        return round(s / u, 2) if u and s else None

    out = {"bench": "membership", "runs": a.runs, "ukko": res["ukko"], "serf": res["serf"],
           "ratio_serf_over_ukko": {k: ratio(k) for k in
                                    ("form_5_s", "form_20_s", "detect_kill9_s",
                                     "detect_sigstop_s")},
           "goals": {
               "kill9_at_least_5x_faster": (ratio("detect_kill9_s") or 0) >= 5,
               "sigstop_no_slower": (ratio("detect_sigstop_s") or 0) >= 1,
               "no_false_deaths_where_serf_has_none":
                   res["serf"]["false_deaths_pause_2s"] > 0 or
                   res["ukko"]["false_deaths_pause_2s"] == 0}}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
