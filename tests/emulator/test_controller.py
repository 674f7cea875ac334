#!/usr/bin/env python3
"""Tests of the emulator's StatefulSet controller and kubelet (--controller):
real `ukko` processes, one per pod, on 127.0.0.100-127.0.0.199 (this file's
range; other tests use 127.0.0.2-99 and 127.0.1.0-127.0.3.255).

The ukko program comes from UKKO_BIN (ctest sets it to the built target); the
tests skip, saying so, without it. kubectl is the real one (those steps skip
without it). Each test has its own emulator in a temporary directory; every
assertion polls with a deadline, none is about timing. Run alone with

    UKKO_BIN=build/ukko python3 tests/emulator/test_controller.py [-v]

and as part of test_emulator.py (ctest -R emulator).
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from emulator_client import EmulatorProcess  # noqa: E402

UKKO_BIN = os.environ.get("UKKO_BIN") or ""
KUBECTL = shutil.which("kubectl")
PODS = "/api/v1/namespaces/default/pods"
STS = "/apis/apps/v1/namespaces/default/statefulsets"
DEADLINE = 30.0


def need_ukko():
    if not UKKO_BIN:
        raise unittest.SkipTest("UKKO_BIN is not set: these tests run a built ukko as pods "
                                "(ctest sets it; by hand: UKKO_BIN=build/ukko python3 %s)"
                                % os.path.relpath(sys.argv[0]))
    if not os.access(UKKO_BIN, os.X_OK):
        raise unittest.SkipTest("UKKO_BIN=%s is not an executable file: build ukko first" % UKKO_BIN)


def wait_for(condition, timeout=DEADLINE, what="condition"):
    """Poll condition() until it returns a true value; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s (last value: %r)" % (timeout, what, last))


def http_get(host, path, port=8558):
    """(status, body) of GET http://host:port/path, or (None, error)."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


def pid_of(pod):
    """The pid the kubelet reports for the pod's running container, or None."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        cid = cs.get("containerID") or ""
        if "running" in (cs.get("state") or {}) and cid.startswith("emulator://"):
            return int(cid[len("emulator://"):])
    return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text):
    """Pids of the processes whose command line or environment contains text."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (entry, what), "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
                        break
            except OSError:
                pass
    return [p for p in found if alive(p)]


def condition(pod, type_):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c.get("status")
    return None


def statefulset(name, replicas, env=None, args=None, probe_path="/ready", grace=30):
    container = {"name": "ukko", "image": "ukko:dev",
                 "ports": [{"name": "management", "containerPort": 8558}],
                 "readinessProbe": {"httpGet": {"path": probe_path, "port": "management"},
                                    "failureThreshold": 1}}
    if env is not None:
        container["env"] = env
    if args is not None:
        container["args"] = args
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": grace,
                                           "containers": [container]}}}}


class ControllerCase(unittest.TestCase):
    """Each test gets its own emulator with the controller (see ARGS)."""

    ADDRESSES = "127.0.0.100-127.0.0.119"
    ARGS = []
    KEEP_STATE = False  # True: the state directory (pod logs) outlives the emulator

    def setUp(self):
        need_ukko()
        root = None
        if self.KEEP_STATE:
            root = tempfile.mkdtemp(prefix="ukko-controller-test-")
            self.addCleanup(shutil.rmtree, root, True)
        self.emu = EmulatorProcess(["--controller", "--ukko", UKKO_BIN, "--pod-addresses", self.ADDRESSES,
                                    "--probe-period-ms", "200", "--restart-backoff-ms", "200"] + self.ARGS,
                                   root=root)
        self.emu.start()
        self.addCleanup(self.stop_emulator)
        self.api = self.emu.client
        self.seen_pids = set()

    def stop_emulator(self):
        if self.emu.proc is None:
            return
        state_dir = self.emu.state_dir
        code = self.emu.terminate()
        left = processes_mentioning(state_dir) + [p for p in self.seen_pids if alive(p)]
        log = self.emu.log_tail(60)
        self.emu.stop()
        self.assertEqual(code, 0, "the emulator exits 0 on SIGTERM; its log:\n" + log)
        self.assertEqual(left, [], "nothing is left running after the emulator stopped")

    # -- helpers -------------------------------------------------------------

    def pods(self, app="ukko"):
        status, doc = self.api.get_json(PODS + "?labelSelector=app%3D" + app)
        self.assertEqual(status, 200, doc)
        return {p["metadata"]["name"]: p for p in doc["items"]}

    def pod(self, name):
        status, doc = self.api.get_json(PODS + "/" + name)
        return doc if status == 200 else None

    def running(self, n, app="ukko"):
        """Wait for exactly pods app-0..n-1, each Running with a process whose /alive is 200."""
        want = ["%s-%d" % (app, i) for i in range(n)]

        def check():
            pods = self.pods(app)
            if sorted(pods) != sorted(want):
                return None
            for p in pods.values():
                ip, pid = p["status"].get("podIP"), pid_of(p)
                if p["status"].get("phase") != "Running" or not ip or not pid or \
                        p["metadata"].get("deletionTimestamp"):
                    return None
                if http_get(ip, "/alive")[0] != 200:
                    return None
                self.seen_pids.add(pid)
            return pods
        return wait_for(check, what="pods %s Running with /alive 200" % ", ".join(want))

    def kubectl(self, *args):
        if KUBECTL is None:
            self.skipTest("kubectl is not installed")
        home = os.path.join(self.emu.root, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = home
        proc = subprocess.run([KUBECTL, "--kubeconfig", os.path.join(self.emu.state_dir, "kubeconfig"),
                               "--cache-dir", os.path.join(self.emu.root, "kube-cache")] + list(args),
                              capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(proc.returncode, 0, "kubectl %s: %s" % (" ".join(args), proc.stderr))
        return proc.stdout


class StatefulSetTest(ControllerCase):
    ARGS = ["--statefulset", "ukko=3"]

    def test_three_pods_run_and_report_ready_as_their_nodes_do(self):
        pods = self.running(3)
        ips = sorted(p["status"]["podIP"] for p in pods.values())
        self.assertEqual(ips, ["127.0.0.100", "127.0.0.101", "127.0.0.102"])
        self.assertEqual(len({pid_of(p) for p in pods.values()}), 3, "one process per pod")
        for p in pods.values():
            ports = p["spec"]["containers"][0]["ports"]
            self.assertIn({"name": "management", "containerPort": 8558, "protocol": "TCP"}, ports)
            self.assertEqual(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet")

        # The Ready condition is what the node's /ready says (500 until the node
        # is a cluster member; whatever it says, the kubelet must agree).
        def agree():
            answers = {}
            for name, p in self.pods().items():
                code, body = http_get(p["status"]["podIP"], "/ready")
                want = "True" if code == 200 else "False"
                cs = p["status"]["containerStatuses"][0]
                if condition(p, "Ready") != want or condition(p, "ContainersReady") != want or \
                        cs["ready"] != (want == "True"):
                    return None
                answers[name] = code
            return answers
        answers = wait_for(agree, what="each pod's Ready condition to match its GET /ready")
        _, sts = self.api.get_json(STS + "/ukko")
        ready = sum(1 for code in answers.values() if code == 200)
        wait_for(lambda: self.api.get_json(STS + "/ukko")[1]["status"].get("readyReplicas", 0) == ready
                 and self.api.get_json(STS + "/ukko")[1]["status"]["replicas"] == 3,
                 what="StatefulSet status: replicas 3, readyReplicas %d" % ready)
        if KUBECTL:
            out = self.kubectl("get", "pods", "-o", "wide")
            for name in ("ukko-0", "ukko-1", "ukko-2"):
                self.assertRegex(out, r"%s\s+%d/1\s+Running\s+0\s" % (name, 1 if answers[name] == 200 else 0))

    def test_scale_up_and_down_with_kubectl(self):
        self.running(3)
        self.assertIn("scaled", self.kubectl("scale", "statefulset", "ukko", "--replicas=5"))
        before = self.running(5)
        self.assertEqual(before["ukko-4"]["status"]["podIP"], "127.0.0.104")
        _, lst = self.api.get_json(PODS)
        rv = lst["metadata"]["resourceVersion"]
        with self.api.watch(PODS + "?watch=true&timeoutSeconds=60&resourceVersion=" + rv) as w:
            self.assertIn("scaled", self.kubectl("scale", "statefulset", "ukko", "--replicas=2"))
            marked, deleted = [], []
            while len(deleted) < 3:
                ev = w.next_event()
                self.assertIsNotNone(ev, "the watch ended before 3 pods were deleted (%s)" % deleted)
                name = ev["object"]["metadata"]["name"]
                if ev["type"] == "MODIFIED" and ev["object"]["metadata"].get("deletionTimestamp") \
                        and name not in marked:
                    marked.append(name)
                elif ev["type"] == "DELETED":
                    self.assertIn(name, marked, "a pod is marked (deletionTimestamp) before it goes")
                    deleted.append(name)
        self.assertEqual(marked, ["ukko-4", "ukko-3", "ukko-2"], "the highest ordinals go first")
        after = self.running(2)
        for name in ("ukko-2", "ukko-3", "ukko-4"):
            pid = pid_of(before[name])
            wait_for(lambda: not alive(pid), what="process %d of %s to be gone" % (pid, name))
        for name in ("ukko-0", "ukko-1"):
            self.assertEqual(pid_of(after[name]), pid_of(before[name]), "%s was not touched" % name)
        wait_for(lambda: self.api.get_json(STS + "/ukko/scale")[1]["status"]["replicas"] == 2,
                 what="the scale subresource to report 2 replicas")

    def test_deleted_pod_comes_back_with_its_address_and_a_new_process(self):
        old = self.running(3)["ukko-1"]
        if KUBECTL:
            self.assertIn('pod "ukko-1" deleted', self.kubectl("delete", "pod", "ukko-1"))
        else:
            self.assertEqual(self.api.request("DELETE", PODS + "/ukko-1").status, 200)
        old_pid = pid_of(old)
        wait_for(lambda: not alive(old_pid), what="the old process %d to stop" % old_pid)
        new = wait_for(lambda: (self.running(3)["ukko-1"]
                                if self.pod("ukko-1")["metadata"]["uid"] != old["metadata"]["uid"] else None),
                       what="ukko-1 made again")
        self.assertEqual(new["status"]["podIP"], old["status"]["podIP"], "same name, same address")
        self.assertNotEqual(pid_of(new), old_pid, "a new process")
        self.assertEqual(new["status"]["containerStatuses"][0]["restartCount"], 0, "a new pod, not a restart")
        log = self.api.request("GET", PODS + "/ukko-1/log")
        self.assertEqual(log.status, 200)
        self.assertIn(b"node started", log.body, "the pod's log is its process's output")

    def test_crashed_process_is_restarted(self):
        old = self.running(3)["ukko-2"]
        old_pid = pid_of(old)
        os.kill(old_pid, signal.SIGKILL)

        def restarted():
            p = self.pod("ukko-2")
            cs = p["status"]["containerStatuses"][0]
            pid = pid_of(p)
            if cs["restartCount"] >= 1 and pid and pid != old_pid and \
                    http_get(p["status"]["podIP"], "/alive")[0] == 200:
                self.seen_pids.add(pid)
                return p
            return None
        p = wait_for(restarted, what="ukko-2 restarted after kill -9 (restartCount 1, /alive 200)")
        self.assertEqual(p["metadata"]["uid"], old["metadata"]["uid"], "the same pod")
        self.assertEqual(p["status"]["podIP"], old["status"]["podIP"])
        last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
        self.assertEqual((last["exitCode"], last["reason"]), (137, "Error"), "killed by SIGKILL")
        prev = self.api.request("GET", PODS + "/ukko-2/log?previous=true")
        self.assertEqual(prev.status, 200)
        self.assertIn(b"node started", prev.body)
        self.assertNotIn(b"==== emulator kubelet", prev.body, "only the process's own output")


class TeardownTest(ControllerCase):
    ARGS = ["--statefulset", "ukko=2"]
    KEEP_STATE = True

    def test_sigkilled_emulator_takes_its_pods_along(self):
        pods = self.running(2)
        pids = [pid_of(p) for p in pods.values()]
        self.emu.proc.kill()
        self.emu.proc.wait(30)
        wait_for(lambda: not any(alive(p) for p in pids),
                 what="the pods' processes %s to die with the emulator" % pids)
        self.assertEqual(processes_mentioning(self.emu.state_dir), [])
        self.emu.stop()
        self.emu.proc = None

    def test_orderly_exit_stops_every_pod(self):
        pods = self.running(2)
        state_dir = self.emu.state_dir
        self.assertEqual(self.emu.terminate(), 0)
        pids = [pid_of(p) for p in pods.values()]
        self.assertEqual([p for p in pids if alive(p)], [], "SIGTERM to the emulator stops its pods")
        self.assertEqual(processes_mentioning(state_dir), [])
        with open(os.path.join(state_dir, "pods", "default_ukko-0.log"), "rb") as f:
            self.assertIn(b"stopped in order", f.read(), "the node got SIGTERM and stopped in order")
        self.emu.stop()
        self.emu.proc = None


class PodEnvironmentTest(ControllerCase):
    """What a pod gets: the API server, the service account, the manifest's env."""

    def create(self, sts):
        resp = self.api.request("POST", STS, body=sts)
        self.assertEqual(resp.status, 201, resp.body)

    def test_readiness_follows_the_probe_path(self):
        # /alive is 200 as soon as the node serves: a probe on it makes pods ready.
        self.create(statefulset("alive", 2, probe_path="/alive"))
        self.running(2, "alive")
        wait_for(lambda: all(condition(p, "Ready") == "True" for p in self.pods("alive").values()),
                 what="pods probed on /alive to be Ready")
        wait_for(lambda: self.api.get_json(STS + "/alive")[1]["status"].get("readyReplicas") == 2,
                 what="readyReplicas 2")

    def test_pods_find_each_other_through_the_api(self):
        # Each pod runs `ukko discover --once` with the environment the kubelet
        # gives it: KUBERNETES_SERVICE_HOST/PORT, the token, CA and namespace
        # files. Its selector comes from the manifest's env, through a fieldRef
        # and a $(VAR) reference: every pod but itself.
        env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
               {"name": "UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR",
                "value": "app=%s,statefulset.kubernetes.io/pod-name!=$(POD_NAME)"},
               {"name": "UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME", "value": "disc"},
               {"name": "UKKO_LOG_LEVEL", "value": "warn"}]
        self.create(statefulset("disc", 2, env=env, args=["discover", "--once"]))
        others = {"disc-0": [{"pod": "disc-1", "host": "127.0.0.101", "port": 8558}],
                  "disc-1": [{"pod": "disc-0", "host": "127.0.0.100", "port": 8558}]}

        def found_the_other():
            for name, want in others.items():
                resp = self.api.request("GET", PODS + "/%s/log" % name)
                if resp.status != 200:
                    return None
                with open(os.path.join(self.emu.state_dir, "pods", "default_%s.log" % name)) as f:
                    lines = [json.loads(line) for line in f if line.startswith('{"contact_points"')]
                if not any(line["contact_points"] == want for line in lines):
                    return None
            return True
        wait_for(found_the_other, what="each pod's `ukko discover --once` to list the other pod")
        p = self.pod("disc-0")
        self.assertEqual(p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 0)

    def test_unknown_key_in_the_manifest_makes_the_pod_crash_loop(self):
        self.create(statefulset("bad", 1, env=[{"name": "UKKO_NO_SUCH_KEY", "value": "1"}]))

        def crashing():
            p = self.pod("bad-0")
            cs = ((p or {}).get("status") or {}).get("containerStatuses") or [{}]
            last = (cs[0].get("lastState") or {}).get("terminated") or {}
            return cs[0].get("restartCount", 0) >= 1 and last.get("exitCode") == 2 and p
        p = wait_for(crashing, what="bad-0 to exit 2 and be restarted")
        self.assertEqual(p["status"]["phase"], "Running", "phase stays Running (restartPolicy Always)")
        with open(os.path.join(self.emu.state_dir, "pods", "default_bad-0.log")) as f:
            self.assertIn("UKKO_NO_SUCH_KEY", f.read(), "ukko names the unknown variable")
        # Deleting the StatefulSet takes its pods along (background cascading).
        self.assertEqual(self.api.request("DELETE", STS + "/bad").status, 200)
        wait_for(lambda: self.pod("bad-0") is None, what="bad-0 to go with its StatefulSet")


if __name__ == "__main__":
    unittest.main()
