#!/usr/bin/env python3
"""bench_bootstrap: how long a cold start of N ukko pods takes until every
node's /ready answers 200, for N = 3, 5 and 10, three ways in the same run:

  expected      the expected size is known (the pods' StatefulSet, read from
                the API): the lowest forms as soon as all N answered;
  stable        only ukko's stable margin (no StatefulSet to read);
  pekko         Pekko Management's default timings configured in ukko:
                stable-margin 5s, probe-interval 1s, no expected size.

Each pod is what the emulator's kubelet makes of one: its pod object is
written Running with its IP to the Kubernetes API emulator (tests/emulator,
over TLS) and its `ukko run` process started, all N at once, on
127.0.0.180-189. The clock starts when the first pod runs; "after last" is
from the moment the last pod was running to the moment the last node
answered /ready 200 (what the goal is about: all 5 ready within 1.5 s of
the last pod running when the expected size is known). Figures are medians
over --runs runs. Prints a table, then one JSON line. Every process started
here dies with this one.

    tests/bench/bench_bootstrap.py [--ukko build/ukko] [--runs 3] [--sizes 3,5,10]
"""
import argparse
import base64
import ctypes
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "emulator"))

from emulator_client import EmulatorProcess  # noqa: E402

BASE = 180  # 127.0.0.180 ...
PODS = "/api/v1/namespaces/default/pods"
STS = "/apis/apps/v1/namespaces/default/statefulsets"
MODES = {
    "expected": [],
    "stable": [],
    "pekko": ["UKKO_CLUSTER_BOOTSTRAP_STABLE_MARGIN=5s", "UKKO_CLUSTER_BOOTSTRAP_PROBE_INTERVAL=1s"],
}

libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def ready(ip):
    conn = http.client.HTTPConnection(ip, 8558, timeout=0.5)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def pod(name, ip, owned):
    meta = {"name": name, "labels": {"app": "ukko"}}
    if owned:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "ukko",
                                    "uid": "bench", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "ukko", "image": "ukko",
                                     "ports": [{"name": "management", "containerPort": 8558}]}]},
            "status": {"phase": "Running", "podIP": ip}}


def statefulset(n):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "ukko"},
            "spec": {"replicas": n, "serviceName": "ukko", "selector": {"matchLabels": {"app": "ukko"}},
                     "template": {"metadata": {"labels": {"app": "ukko"}},
                                  "spec": {"containers": [{"name": "ukko", "image": "ukko"}]}}}}


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = tempfile.mkdtemp(prefix="ukko-bench-boot-")
        self.emu = EmulatorProcess(["--quiet"], root=os.path.join(self.root, "emu"))
        self.procs = []

    def start(self):
        os.makedirs(self.emu.root, exist_ok=True)
        self.emu.start()
        self.api = self.emu.client
        self.keyring = os.path.join(self.root, "keyring.json")
        with open(self.keyring, "w") as f:
            json.dump([base64.b64encode(os.urandom(32)).decode()], f)

    def env(self, name, ip, extra):
        st = self.emu.state_dir
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": name,
               "KUBERNETES_SERVICE_HOST": self.emu.info["host"],
               "KUBERNETES_SERVICE_PORT": str(self.emu.info["port"]),
               "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH": os.path.join(st, "token"),
               "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH": os.path.join(st, "ca.crt"),
               "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH": os.path.join(st, "namespace"),
               "UKKO_MANAGEMENT_HOSTNAME": ip, "UKKO_CLUSTER_HOSTNAME": ip,
               "UKKO_CLUSTER_KEYRING_PATH": self.keyring, "UKKO_LOG_FORMAT": "text"}
        for kv in extra:
            k, v = kv.split("=", 1)
            env[k] = v
        return env

    def stop_pods(self, n):
        for p in self.procs:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.procs = []
        for i in range(n):
            self.api.request("DELETE", "%s/ukko-%d" % (PODS, i), body={"gracePeriodSeconds": 0})
        self.api.request("DELETE", STS + "/ukko")

    def run_once(self, mode, n):
        """Seconds from the first pod running to every /ready 200, and from
        the last pod running; None when it did not happen within 60 s."""
        owned = mode == "expected"
        if owned:
            resp = self.api.request("POST", STS, body=statefulset(n))
            assert resp.status == 201, resp.data
        ips = ["127.0.0.%d" % (BASE + i) for i in range(n)]
        logs = os.path.join(self.root, "logs")
        os.makedirs(logs, exist_ok=True)
        t0 = time.monotonic()
        for i, ip in enumerate(ips):
            name = "ukko-%d" % i
            resp = self.api.request("POST", PODS, body=pod(name, ip, owned))
            assert resp.status == 201, resp.data
            log = open(os.path.join(logs, "%s-%s-%d.log" % (mode, name, n)), "ab")
            self.procs.append(subprocess.Popen([self.args.ukko, "run"], env=self.env(name, ip, MODES[mode]),
                                               stdout=log, stderr=subprocess.STDOUT,
                                               preexec_fn=die_with_parent))
            log.close()
        t_last = time.monotonic()
        done = {}
        deadline = t_last + 60
        while len(done) < n and time.monotonic() < deadline:
            for ip in ips:
                if ip not in done and ready(ip):
                    done[ip] = time.monotonic()
            time.sleep(0.01)
        self.stop_pods(n)
        if len(done) < n:
            return None
        t_all = max(done.values())
        return t_all - t0, t_all - t_last

    def close(self):
        for p in self.procs:
            try:
                p.kill()
            except OSError:
                pass
        self.emu.terminate()
        shutil.rmtree(self.root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ukko", default=os.path.join(REPO, "build", "ukko"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="3,5,10")
    args = ap.parse_args()
    if not os.access(args.ukko, os.X_OK):
        ap.error("%s is not built (cmake --build build)" % args.ukko)
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > 10:
        ap.error("at most 10 pods (127.0.0.180-189)")
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    results = {}
    try:
        bench.start()
        print("cold start to every /ready 200 (median of %d; seconds from the last pod running, "
              "and from the first)" % args.runs)
        print("%-9s %4s %14s %14s" % ("mode", "pods", "after last", "after first"))
        for mode in MODES:
            results[mode] = {}
            for n in sizes:
                runs = [bench.run_once(mode, n) for _ in range(args.runs)]
                ok = [r for r in runs if r is not None]
                entry = {"runs": len(runs), "failed": len(runs) - len(ok)}
                if ok:
                    entry["after_last_s"] = round(statistics.median(r[1] for r in ok), 3)
                    entry["after_first_s"] = round(statistics.median(r[0] for r in ok), 3)
                    entry["after_last_max_s"] = round(max(r[1] for r in ok), 3)
                results[mode][str(n)] = entry
                print("%-9s %4d %14s %14s" % (mode, n, entry.get("after_last_s", "failed"),
                                             entry.get("after_first_s", "failed")), flush=True)
    finally:
        bench.close()
    five = results.get("expected", {}).get("5", {})
    line = {"bench": "bootstrap", "runs": args.runs, "results": results,
            "goal_5_ready_within_1_5s_of_last_pod": bool(five.get("after_last_max_s") is not None
                                                        and five["after_last_max_s"] <= 1.5)}
    for n in sizes:
        e, p = results["expected"].get(str(n), {}), results["pekko"].get(str(n), {})
        if e.get("after_last_s") and p.get("after_last_s"):
            line.setdefault("pekko_over_expected", {})[str(n)] = round(p["after_last_s"] / e["after_last_s"], 1)
    print(json.dumps(line, sort_keys=True))


if __name__ == "__main__":
    main()
