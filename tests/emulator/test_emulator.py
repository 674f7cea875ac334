#!/usr/bin/env python3
"""Tests of the Kubernetes API emulator: against the real kubectl, the recorded
fixtures, and the behaviour ukko's discovery relies on (selectors, watch, errors,
faults, token rotation, scale).

Every emulator runs as a child process in a temporary directory that is removed
afterwards, whatever happens; the child also exits if this process dies (its
stdin is a pipe from us). No assertion is about timing.

    python3 tests/emulator/test_emulator.py [-v] [TestClass[.test_name]]
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from emulator_client import EMULATOR, EmulatorProcess  # noqa: E402
from test_emulator_units import PatchUnitTest, ProtobufUnitTest, SelectorUnitTest  # noqa: E402,F401
# The controller's tests run real ukko processes (UKKO_BIN; skipped without it).
from test_controller import PodEnvironmentTest, StatefulSetTest, TeardownTest  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(HERE))
SHARED_FIXTURES = os.path.normpath(os.path.join(REPO, "..", "shared", "k8s-fixtures"))
OWN_FIXTURES = os.path.join(HERE, "fixtures")
KUBECTL = shutil.which("kubectl")

UNAUTHORIZED = (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                b'"message":"Unauthorized","reason":"Unauthorized","code":401}')


def wait_for(condition, timeout=15.0, what="condition"):
    """Poll condition() until it returns a true value; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last value: %r)" % (what, last))


def read(path):
    with open(path) as f:
        return f.read()


def compact(obj):
    """The bytes a JSON server would send for obj: no spaces, keys in their order."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def contact_points(pod_list, port_name="management", container=None, default_port=8558):
    """The rule of ARCHITECTURE.md (Discovery), written independently of the C code."""
    out = []
    for pod in pod_list["items"]:
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
        if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if container is not None:
            cs = [c for c in status.get("containerStatuses", []) if c.get("name") == container]
            if any("waiting" in (c.get("state") or {}) for c in cs):
                continue
        port = default_port
        if port_name:
            ports = [p["containerPort"] for c in spec.get("containers", []) for p in c.get("ports", [])
                     if p.get("name") == port_name]
            port = ports[0] if ports else default_port
        ip = status["podIP"]
        out.append("%s:%d" % ("[%s]" % ip if ":" in ip else ip, port))
    return sorted(out)


class EmulatorCase(unittest.TestCase):
    """A test class sharing one emulator, started with ARGS."""

    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.emu = EmulatorProcess(cls.ARGS)
        try:
            cls.emu.start()
        except BaseException:
            cls.emu.stop()
            raise
        cls.api = cls.emu.client

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def kubectl(self, *args, token=None, kubeconfig=False, check=True, server=None, stdin=None):
        """Run the real kubectl against the emulator; returns the CompletedProcess."""
        if KUBECTL is None:
            self.skipTest("kubectl is not installed")
        emu = self.emu
        home = os.path.join(emu.root, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = home
        cmd = [KUBECTL, "--cache-dir", os.path.join(emu.root, "kube-cache")]
        if kubeconfig:
            cmd += ["--kubeconfig", os.path.join(emu.state_dir, "kubeconfig")]
        else:
            host = emu.info["host"]
            url = server or "https://%s:%d" % ("[%s]" % host if ":" in host else host, emu.info["port"])
            cmd += ["--kubeconfig", os.devnull, "--server", url,
                    "--certificate-authority", os.path.join(emu.state_dir, "ca.crt"),
                    "--token", token or self.api.token()]
        proc = subprocess.run(cmd + list(args), env=env, input=stdin, capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            self.fail("kubectl %s failed (exit %d):\n%s\n%s\nemulator log:\n%s"
                      % (" ".join(args), proc.returncode, proc.stdout, proc.stderr, emu.log_tail()))
        return proc

    def get(self, path, **kw):
        resp = self.api.request("GET", path, **kw)
        return resp.status, (resp.json() if resp.body[:1] in (b"{", b"[") else resp.body)

    def ok(self, method, path, body=None, headers=None, expect=(200, 201)):
        resp = self.api.request(method, path, body=body, headers=headers)
        self.assertIn(resp.status, expect, "%s %s answered %d: %s" % (method, path, resp.status, resp.body[:500]))
        return resp.json()


def pod_manifest(name, labels=None, ns=None, phase=None):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": labels if labels is not None else {"app": "ukko"}},
           "spec": {"containers": [{"name": "ukko", "image": "ukko:dev",
                                    "ports": [{"name": "management", "containerPort": 8558}]}]}}
    if ns:
        pod["metadata"]["namespace"] = ns
    if phase:
        pod["status"] = {"phase": phase}
    return pod


# ---------------------------------------------------------------------------

@unittest.skipIf(KUBECTL is None, "kubectl is not installed")
class KubectlTest(EmulatorCase):
    ARGS = ["--generate-pods", "3", "--statefulset", "ukko=3",
            "--pods", os.path.join(OWN_FIXTURES, "statefulset-pods.json")]

    def rows(self, text):
        lines = [line.split() for line in text.strip().splitlines()]
        return lines[0], {r[0]: r for r in lines[1:]}

    def test_get_pods_with_label_selector(self):
        out = self.kubectl("get", "pods", "-l", "app=ukko").stdout
        header, rows = self.rows(out)
        self.assertEqual(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], out)
        self.assertEqual(sorted(rows), ["ukko-0", "ukko-1", "ukko-2"], out)
        for r in rows.values():
            self.assertEqual(r[1:4], ["1/1", "Running", "0"], out)

    def test_get_pods_json(self):
        doc = json.loads(self.kubectl("get", "pods", "-l", "app=ukko", "-o", "json").stdout)
        self.assertEqual(doc["kind"], "List")
        self.assertEqual(sorted(p["metadata"]["name"] for p in doc["items"]), ["ukko-0", "ukko-1", "ukko-2"])
        for p in doc["items"]:
            self.assertEqual((p["kind"], p["apiVersion"]), ("Pod", "v1"))
            self.assertEqual(p["status"]["phase"], "Running")
            self.assertEqual(p["spec"]["containers"][0]["ports"][0],
                             {"name": "management", "containerPort": 8558, "protocol": "TCP"})
        self.assertEqual(sorted(p["status"]["podIP"] for p in doc["items"]), ["10.1.0.1", "10.1.0.2", "10.1.0.3"])

    def test_get_pods_wide(self):
        out = self.kubectl("get", "pods", "-l", "app=ukko", "-o", "wide").stdout
        header, rows = self.rows(out)
        self.assertEqual(header[:7], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], out)
        self.assertEqual({n: r[5] for n, r in rows.items()},
                         {"ukko-0": "10.1.0.1", "ukko-1": "10.1.0.2", "ukko-2": "10.1.0.3"}, out)

    def test_kubeconfig_and_fixture_namespace(self):
        out = self.kubectl("get", "pods", "-n", "ukko", "-o", "wide", kubeconfig=True).stdout
        _, rows = self.rows(out)
        self.assertEqual({n: r[5] for n, r in rows.items()},
                         {"ukko-0": "127.0.0.2", "ukko-1": "127.0.0.3", "ukko-2": "127.0.0.4"}, out)
        out = self.kubectl("get", "pods", "-A", kubeconfig=True).stdout
        lines = [line.split() for line in out.strip().splitlines()]
        self.assertEqual(lines[0][:2], ["NAMESPACE", "NAME"], out)
        listed = {(r[0], r[1]) for r in lines[1:]}
        for ns, name in [("default", "ukko-%d" % i) for i in range(3)] + [("ukko", "ukko-%d" % i) for i in range(3)]:
            self.assertIn((ns, name), listed, out)
        out = self.kubectl("get", "namespaces", kubeconfig=True).stdout
        self.assertIn("ukko", self.rows(out)[1], out)

    def test_apply_configure_and_delete(self):
        manifest = os.path.join(self.emu.root, "applied-pod.yaml")
        text = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: applied-pod\n  labels:\n    app: applied\n"
                "spec:\n  containers:\n  - name: ukko\n    image: ukko:dev\n    ports:\n"
                "    - name: management\n      containerPort: 8558\n")
        with open(manifest, "w") as f:
            f.write(text)
        self.assertIn("pod/applied-pod created", self.kubectl("apply", "-f", manifest).stdout)
        status, pod = self.get("/api/v1/namespaces/default/pods/applied-pod")
        self.assertEqual(status, 200, pod)
        self.assertTrue(pod["metadata"]["uid"] and pod["metadata"]["resourceVersion"]
                        and pod["metadata"]["creationTimestamp"], pod["metadata"])
        self.assertEqual(pod["status"]["phase"], "Running")
        self.assertTrue(pod["status"]["podIP"].startswith("10.244."), pod["status"])
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration", pod["metadata"]["annotations"])
        self.assertIn("pod/applied-pod unchanged", self.kubectl("apply", "-f", manifest).stdout)
        with open(manifest, "w") as f:
            f.write(text.replace("app: applied\n", "app: applied\n    tier: backend\n"))
        self.assertIn("pod/applied-pod configured", self.kubectl("apply", "-f", manifest).stdout)
        _, pod = self.get("/api/v1/namespaces/default/pods/applied-pod")
        self.assertEqual(pod["metadata"]["labels"], {"app": "applied", "tier": "backend"})
        self.assertEqual(pod["status"]["phase"], "Running", "a patch must not lose the status")
        out = self.kubectl("get", "pod", "applied-pod", "--show-labels").stdout
        self.assertIn("app=applied,tier=backend", out)
        self.assertIn('pod "applied-pod" deleted', self.kubectl("delete", "pod", "applied-pod").stdout)
        status, body = self.get("/api/v1/namespaces/default/pods/applied-pod")
        self.assertEqual(status, 404, body)

    def test_label_annotate_patch(self):
        self.kubectl("create", "-f", "-", stdin=json.dumps(pod_manifest("kubectl-patched")))
        self.kubectl("label", "pod", "kubectl-patched", "color=blue")
        self.kubectl("annotate", "pod", "kubectl-patched", "note=hello")
        self.kubectl("patch", "pod", "kubectl-patched", "--type=json",
                     "-p", '[{"op": "add", "path": "/metadata/labels/size", "value": "xl"}]')
        self.kubectl("patch", "pod", "kubectl-patched", "--type=merge", "-p", '{"metadata":{"labels":{"app":null}}}')
        _, pod = self.get("/api/v1/namespaces/default/pods/kubectl-patched")
        self.assertEqual(pod["metadata"]["labels"], {"color": "blue", "size": "xl"})
        self.assertEqual(pod["metadata"]["annotations"], {"note": "hello"})
        out = self.kubectl("get", "pods", "-l", "color=blue,size in (xl,l)", "-o", "name").stdout
        self.assertEqual(out.split(), ["pod/kubectl-patched"])
        self.kubectl("delete", "pod", "kubectl-patched")

    def test_statefulset_get_and_scale(self):
        sts = json.loads(self.kubectl("get", "statefulset", "ukko", "-o", "json").stdout)
        self.assertEqual((sts["kind"], sts["apiVersion"], sts["spec"]["replicas"]), ("StatefulSet", "apps/v1", 3))
        self.assertIn("statefulset.apps/ukko scaled", self.kubectl("scale", "statefulset", "ukko", "--replicas=4").stdout)
        _, sts = self.get("/apis/apps/v1/namespaces/default/statefulsets/ukko")
        self.assertEqual(sts["spec"]["replicas"], 4)
        self.assertEqual(sts["metadata"]["generation"], 2)
        out = self.kubectl("get", "sts").stdout
        self.assertEqual(self.rows(out)[0], ["NAME", "READY", "AGE"], out)
        self.kubectl("scale", "statefulset", "ukko", "--replicas=3")

    def test_create_namespace_and_run(self):
        # kubectl create namespace sends protobuf; kubectl run sends JSON.
        self.assertIn("namespace/team created", self.kubectl("create", "namespace", "team").stdout)
        self.assertIn("pod/web created", self.kubectl("run", "web", "--image=nginx:1.27", "-n", "team").stdout)
        _, rows = self.rows(self.kubectl("get", "pods", "-n", "team").stdout)
        self.assertEqual(rows["web"][2], "Running")
        self.kubectl("delete", "namespace", "team")
        self.assertEqual(self.api.request("GET", "/api/v1/namespaces/team/pods/web").status, 404)

    def test_describe_pod(self):
        out = self.kubectl("describe", "pod", "ukko-1").stdout
        self.assertIn("10.1.0.2", out)
        self.assertIn("Status:           Running", out)

    def test_forbidden_and_unauthorized(self):
        proc = self.kubectl("get", "pods", token=self.api.token("token-forbidden"), check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn('Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:ukko" '
                      'cannot list resource "pods" in API group "" in the namespace "default"', proc.stderr)
        proc = self.kubectl("get", "pods", token="not-a-token", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("Unauthorized", proc.stderr)

    def test_missing_namespace(self):
        proc = self.kubectl("get", "pods", "-n", "nowhere", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn('namespaces "nowhere" not found', proc.stderr)

    def test_watch_with_kubectl(self):
        """kubectl get -w lists, then watches from the list's resourceVersion."""
        home = os.path.join(self.emu.root, "home")
        cmd = [KUBECTL, "--cache-dir", os.path.join(self.emu.root, "kube-cache"),
               "--kubeconfig", os.path.join(self.emu.state_dir, "kubeconfig"),
               "get", "pods", "-l", "app=watched", "--watch", "-o", "name", "--request-timeout", "60s"]
        env = dict(os.environ, HOME=home)
        env.pop("KUBECONFIG", None)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: any("watch=true" in r["query"] and "app%3Dwatched" in r["query"]
                                 for r in self.api.requests()["recent"]), what="kubectl's watch request")
            self.ok("POST", "/api/v1/namespaces/default/pods", pod_manifest("watched-0", {"app": "watched"}))
            line = proc.stdout.readline()
            self.assertEqual(line.strip(), "pod/watched-0")
        finally:
            proc.kill()
            proc.communicate()
            self.api.request("DELETE", "/api/v1/namespaces/default/pods/watched-0")


@unittest.skipIf(KUBECTL is None, "kubectl is not installed")
class KubectlIPv6LegacyDiscoveryTest(EmulatorCase):
    """On ::1, serving only the legacy discovery documents (kubectl falls back)."""

    ARGS = ["--host", "::1", "--generate-pods", "2", "--no-aggregated-discovery"]

    @classmethod
    def setUpClass(cls):
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            raise unittest.SkipTest("IPv6 loopback (::1) is not available here")
        super().setUpClass()

    def test_kubectl_over_ipv6(self):
        self.assertIn("https://[::1]:", read(os.path.join(self.emu.state_dir, "kubeconfig")))
        out = self.kubectl("get", "pods", "-o", "name", kubeconfig=True).stdout
        self.assertEqual(out.split(), ["pod/ukko-0", "pod/ukko-1"])
        paths = self.api.requests()["paths"]
        self.assertIn("/api/v1", paths, "kubectl should have fallen back to legacy discovery")
        resp = self.api.request("GET", "/api", headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
        self.assertEqual(resp.json()["kind"], "APIVersions")


# ---------------------------------------------------------------------------

class ApiTest(EmulatorCase):
    ARGS = ["--generate-pods", "4", "--statefulset", "ukko=3",
            "--pods", os.path.join(OWN_FIXTURES, "statefulset-pods.json")]

    def test_unauthorized_body(self):
        for token in (None, "wrong-token"):
            resp = self.api.request("GET", "/api/v1/namespaces/default/pods", token=token)
            self.assertEqual(resp.status, 401)
            self.assertEqual(resp.body, UNAUTHORIZED)
            self.assertEqual(resp.headers["Content-Type"], "application/json")
        resp = self.api.request("GET", "/emulator/v1/requests", token=None)
        self.assertEqual(resp.status, 401)

    def test_forbidden_bodies(self):
        forbidden = self.api.token("token-forbidden")
        resp = self.api.request("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dukko", token=forbidden)
        self.assertEqual(resp.status, 403)
        self.assertEqual(resp.json(), {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": 'pods is forbidden: User "system:serviceaccount:default:ukko" cannot list resource '
                       '"pods" in API group "" in the namespace "default"',
            "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
        resp = self.api.request("GET", "/apis/apps/v1/namespaces/default/statefulsets/ukko", token=forbidden)
        self.assertEqual(resp.status, 403)
        self.assertEqual(resp.json()["message"],
                         'statefulsets.apps "ukko" is forbidden: User "system:serviceaccount:default:ukko" '
                         'cannot get resource "statefulsets" in API group "apps" in the namespace "default"')
        self.assertEqual(resp.json()["details"], {"name": "ukko", "group": "apps", "kind": "statefulsets"})
        resp = self.api.request("GET", "/api/v1/pods?watch=true", token=forbidden)
        self.assertEqual(resp.status, 403)
        self.assertIn('cannot watch resource "pods" in API group "" at the cluster scope', resp.json()["message"])
        self.assertEqual(self.api.request("POST", "/emulator/v1/faults", body={}, token=forbidden).status, 403)
        # Discovery is open to every authenticated user.
        self.assertEqual(self.api.request("GET", "/api/v1", token=forbidden).status, 200)

    def test_not_found(self):
        status, body = self.get("/api/v1/namespaces/nowhere/pods")
        self.assertEqual(status, 404)
        self.assertEqual(body, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": 'namespaces "nowhere" not found', "reason": "NotFound",
                                "details": {"name": "nowhere", "kind": "namespaces"}, "code": 404})
        status, body = self.get("/api/v1/namespaces/default/pods/nope")
        self.assertEqual((status, body["message"], body["details"]),
                         (404, 'pods "nope" not found', {"name": "nope", "kind": "pods"}))
        status, body = self.get("/apis/apps/v1/namespaces/default/statefulsets/nope")
        self.assertEqual((status, body["message"]), (404, 'statefulsets.apps "nope" not found'))
        status, body = self.get("/api/v1/namespaces/default/widgets")
        self.assertEqual((status, body["reason"]), (404, "NotFound"))

    def test_discovery_documents(self):
        status, v = self.get("/version")
        self.assertEqual((status, v["major"], v["minor"]), (200, "1", "32"))
        _, api = self.get("/api")
        self.assertEqual((api["kind"], api["versions"]), ("APIVersions", ["v1"]))
        _, apis = self.get("/apis")
        self.assertEqual([g["name"] for g in apis["groups"]], ["apps"])
        _, core = self.get("/api/v1")
        pods = [r for r in core["resources"] if r["name"] == "pods"][0]
        self.assertEqual((pods["kind"], pods["namespaced"], pods["shortNames"]), ("Pod", True, ["po"]))
        self.assertIn("watch", pods["verbs"])
        self.assertIn("namespaces", [r["name"] for r in core["resources"]])
        _, apps = self.get("/apis/apps/v1")
        self.assertIn("statefulsets/scale", [r["name"] for r in apps["resources"]])
        accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        resp = self.api.request("GET", "/apis", headers={"Accept": accept})
        self.assertEqual(resp.headers["Content-Type"], "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        doc = resp.json()
        self.assertEqual((doc["kind"], doc["items"][0]["metadata"]["name"]), ("APIGroupDiscoveryList", "apps"))
        resp = self.api.request("GET", "/api/v1/namespaces/default/pods",
                                headers={"Accept": "application/vnd.kubernetes.protobuf"})
        self.assertEqual(resp.status, 406)
        _, root = self.get("/openapi/v3")
        self.assertIn("api/v1", root["paths"])

    def test_list_shape_and_resource_version(self):
        resp = self.api.request("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dukko")
        self.assertEqual(resp.status, 200)
        self.assertEqual(int(resp.headers["Content-Length"]), len(resp.body))
        doc = resp.json()
        self.assertEqual(list(doc)[:3], ["kind", "apiVersion", "metadata"])
        self.assertEqual((doc["kind"], doc["apiVersion"]), ("PodList", "v1"))
        self.assertTrue(doc["metadata"]["resourceVersion"].isdigit())
        self.assertEqual(len(doc["items"]), 4)
        for pod in doc["items"]:
            self.assertNotIn("kind", pod, "list items carry no kind, as from a real server")
            ports = pod["spec"]["containers"][0]["ports"]
            self.assertEqual(ports, [{"name": "management", "containerPort": 8558, "protocol": "TCP"}])
        status, single = self.get("/api/v1/namespaces/default/pods/ukko-0")
        self.assertEqual((single["kind"], single["apiVersion"]), ("Pod", "v1"))

    def test_all_namespaces(self):
        _, doc = self.get("/api/v1/pods")
        names = sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in doc["items"]
                       if p["metadata"]["name"].startswith("ukko-"))
        self.assertEqual(names[:4], [("default", "ukko-%d" % i) for i in range(4)])
        self.assertIn(("ukko", "ukko-2"), names)
        _, doc = self.get("/api/v1/pods?fieldSelector=metadata.namespace%3Dukko")
        self.assertEqual(len(doc["items"]), 3)

    def test_label_selectors(self):
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "selectors"}})
        pods = {"a": {"app": "ukko", "tier": "x"}, "b": {"app": "ukko", "tier": "y"},
                "c": {"app": "other", "tier": "x"}, "d": {"app": "ukko"}, "e": {}, "f": {"n": "5"}}
        for name, labels in pods.items():
            self.ok("POST", "/api/v1/namespaces/selectors/pods", pod_manifest(name, labels))
        cases = {
            "app=ukko": "abd", "app==ukko": "abd", "app!=ukko": "cef", "app in (ukko,other)": "abcd",
            "app notin (ukko)": "cef", "tier": "abc", "!tier": "def", "app=ukko,tier=x": "a",
            "app=ukko,!tier": "d", "tier in (x),app notin (other)": "a", " app = ukko , tier != y ": "ad",
            "n>4": "f", "n<5": "", "": "abcdef",
        }
        from urllib.parse import quote
        for selector, want in cases.items():
            status, doc = self.get("/api/v1/namespaces/selectors/pods?labelSelector=" + quote(selector))
            self.assertEqual(status, 200, doc)
            got = "".join(sorted(p["metadata"]["name"] for p in doc["items"]))
            self.assertEqual(got, want, "labelSelector %r" % selector)
        for bad in ("app in (", "app=ukko,", "=x", "app in ()", "a b"):
            status, doc = self.get("/api/v1/namespaces/selectors/pods?labelSelector=" + quote(bad))
            self.assertEqual((status, doc["reason"]), (400, "BadRequest"), "labelSelector %r" % bad)

    def test_field_selectors(self):
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "fields"}})
        self.ok("POST", "/api/v1/namespaces/fields/pods", pod_manifest("running"))
        self.ok("POST", "/api/v1/namespaces/fields/pods", pod_manifest("pending", phase="Pending"))
        self.ok("POST", "/api/v1/namespaces/fields/pods", pod_manifest("failed", phase="Failed"))
        from urllib.parse import quote
        cases = {"status.phase=Running": ["running"], "status.phase!=Running": ["failed", "pending"],
                 "metadata.name=pending": ["pending"], "status.phase==Pending": ["pending"],
                 "status.phase!=Running,metadata.name!=failed": ["pending"],
                 "spec.nodeName=emulator-node": ["failed", "pending", "running"]}
        for selector, want in cases.items():
            status, doc = self.get("/api/v1/namespaces/fields/pods?fieldSelector=" + quote(selector))
            self.assertEqual(sorted(p["metadata"]["name"] for p in doc["items"]), want, selector)
        status, doc = self.get("/api/v1/namespaces/fields/pods?fieldSelector=spec.unknown%3Dx")
        self.assertEqual((status, doc["message"]), (400, "field label not supported: spec.unknown"))
        # A pod created with a status keeps it; no IP for a pending pod.
        _, pending = self.get("/api/v1/namespaces/fields/pods/pending")
        self.assertNotIn("podIP", pending["status"])
        _, running = self.get("/api/v1/namespaces/fields/pods/running")
        self.assertTrue(running["status"]["podIP"].startswith("10.244."))

    def test_pagination(self):
        seen, cont, pages = [], "", 0
        while True:
            status, doc = self.get("/api/v1/pods?limit=3" + ("&continue=" + cont if cont else ""))
            self.assertEqual(status, 200, doc)
            seen += [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in doc["items"]]
            pages += 1
            cont = doc["metadata"].get("continue")
            if not cont:
                break
        _, full = self.get("/api/v1/pods")
        self.assertEqual(seen, [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in full["items"]])
        self.assertGreater(pages, 1)
        status, doc = self.get("/api/v1/pods?limit=3&continue=garbage")
        self.assertEqual((status, doc["reason"]), (400, "BadRequest"))

    def test_create_get_patch_delete(self):
        path = "/api/v1/namespaces/default/pods"
        created = self.ok("POST", path, pod_manifest("crud", {"app": "crud"}))
        meta = created["metadata"]
        self.assertEqual((created["kind"], meta["namespace"]), ("Pod", "default"))
        self.assertTrue(meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z"))
        self.assertEqual(created["status"]["podIPs"], [{"ip": created["status"]["podIP"]}])
        resp = self.api.request("POST", path, body=pod_manifest("crud"))
        self.assertEqual((resp.status, resp.json()["reason"]), (409, "AlreadyExists"))
        resp = self.api.request("POST", path, body=pod_manifest("Bad_Name"))
        self.assertEqual((resp.status, resp.json()["reason"]), (422, "Invalid"))
        gen = self.ok("POST", path, dict(pod_manifest(""), metadata={"generateName": "gen-"}))
        self.assertRegex(gen["metadata"]["name"], r"^gen-[a-z0-9]{5}$")
        self.ok("DELETE", path + "/" + gen["metadata"]["name"])

        merged = self.ok("PATCH", path + "/crud", {"metadata": {"labels": {"extra": "1"}}},
                         headers={"Content-Type": "application/merge-patch+json"})
        self.assertEqual(merged["metadata"]["labels"], {"app": "crud", "extra": "1"})
        self.assertGreater(int(merged["metadata"]["resourceVersion"]), int(meta["resourceVersion"]))
        smp = self.ok("PATCH", path + "/crud",
                      {"spec": {"containers": [{"name": "ukko", "image": "ukko:v2"}]}},
                      headers={"Content-Type": "application/strategic-merge-patch+json"})
        self.assertEqual(smp["spec"]["containers"][0]["image"], "ukko:v2")
        self.assertEqual(smp["spec"]["containers"][0]["ports"][0]["name"], "management",
                         "strategic merge keeps the rest of the container")
        jp = self.ok("PATCH", path + "/crud", [{"op": "remove", "path": "/metadata/labels/extra"}],
                     headers={"Content-Type": "application/json-patch+json"})
        self.assertEqual(jp["metadata"]["labels"], {"app": "crud"})
        resp = self.api.request("PATCH", path + "/crud", body="{}", headers={"Content-Type": "application/apply-patch+yaml"})
        self.assertEqual(resp.status, 415)
        stale = self.api.request("PATCH", path + "/crud", body={"metadata": {"resourceVersion": "1"}},
                                 headers={"Content-Type": "application/merge-patch+json"})
        self.assertEqual((stale.status, stale.json()["reason"]), (409, "Conflict"))
        status = self.ok("PATCH", path + "/crud/status", {"status": {"phase": "Failed"}},
                         headers={"Content-Type": "application/merge-patch+json"})
        self.assertEqual(status["status"]["phase"], "Failed")
        deleted = self.ok("DELETE", path + "/crud")
        self.assertEqual((deleted["kind"], deleted["metadata"]["name"]), ("Pod", "crud"))
        self.assertIn("deletionTimestamp", deleted["metadata"])
        self.assertEqual(self.api.request("GET", path + "/crud").status, 404)
        self.assertEqual(self.api.request("DELETE", path + "/crud").status, 404)

    def test_table(self):
        accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        resp = self.api.request("GET", "/api/v1/namespaces/ukko/pods", headers={"Accept": accept})
        self.assertEqual(resp.headers["Content-Type"], "application/json;as=Table;v=v1;g=meta.k8s.io")
        table = resp.json()
        self.assertEqual((table["kind"], table["apiVersion"]), ("Table", "meta.k8s.io/v1"))
        self.assertEqual([c["name"] for c in table["columnDefinitions"] if c["priority"] == 0],
                         ["Name", "Ready", "Status", "Restarts", "Age"])
        cells = {r["cells"][0]: r["cells"] for r in table["rows"]}
        self.assertEqual(cells["ukko-1"][1:3] + cells["ukko-1"][5:6], ["1/1", "Running", "127.0.0.3"])
        self.assertEqual(table["rows"][0]["object"]["kind"], "PartialObjectMetadata")

    def test_watch_events(self):
        path = "/api/v1/namespaces/default/pods"
        _, doc = self.get(path + "?labelSelector=app%3Dwatch")
        rv = doc["metadata"]["resourceVersion"]
        with self.api.watch(path + "?watch=true&labelSelector=app%3Dwatch&timeoutSeconds=30&resourceVersion=" + rv) as w:
            self.assertEqual(w.status, 200)
            self.assertEqual(w.resp.getheader("Transfer-Encoding"), "chunked")
            self.ok("POST", path, pod_manifest("w1", {"app": "watch"}))
            self.ok("POST", path, pod_manifest("other", {"app": "not-watched"}))
            self.ok("PATCH", path + "/w1", {"metadata": {"labels": {"v": "2"}}},
                    headers={"Content-Type": "application/merge-patch+json"})
            self.ok("PATCH", path + "/w1", {"metadata": {"labels": {"app": "gone"}}},
                    headers={"Content-Type": "application/merge-patch+json"})
            self.ok("PATCH", path + "/w1", {"metadata": {"labels": {"app": "watch"}}},
                    headers={"Content-Type": "application/merge-patch+json"})
            self.ok("DELETE", path + "/w1")
            events = [w.next_event() for _ in range(5)]
        self.ok("DELETE", path + "/other")
        self.assertEqual([e["type"] for e in events], ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"])
        self.assertTrue(all(e["object"]["metadata"]["name"] == "w1" for e in events), events)
        self.assertEqual(events[1]["object"]["metadata"]["labels"], {"app": "watch", "v": "2"})
        self.assertEqual(events[0]["object"]["kind"], "Pod")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        # Resuming from the last event's resourceVersion yields only what came after it.
        with self.api.watch(path + "?watch=1&labelSelector=app%3Dwatch&timeoutSeconds=30&resourceVersion=" + str(rvs[1])) as w:
            self.assertEqual([w.next_event()["type"] for _ in range(3)], ["DELETED", "ADDED", "DELETED"])

    def test_watch_initial_state_bookmarks_and_expiry(self):
        path = "/api/v1/namespaces/ukko/pods"
        with self.api.watch(path + "?watch=true&timeoutSeconds=30&allowWatchBookmarks=true&sendInitialEvents=true"
                            "&resourceVersionMatch=NotOlderThan") as w:
            first = [w.next_event() for _ in range(4)]
        self.assertEqual([e["type"] for e in first], ["ADDED"] * 3 + ["BOOKMARK"])
        self.assertEqual(first[3]["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})
        with self.api.watch(path + "?watch=true&timeoutSeconds=30") as w:
            self.assertEqual(sorted(w.next_event()["object"]["metadata"]["name"] for _ in range(3)),
                             ["ukko-0", "ukko-1", "ukko-2"])
        with self.api.watch(path + "?watch=true&resourceVersion=2&timeoutSeconds=30") as w:
            event = w.next_event()
            self.assertEqual((event["type"], event["object"]["code"], event["object"]["reason"]),
                             ("ERROR", 410, "Expired"))
            self.assertIsNone(w.next_event(), "the stream ends after the error")
        with self.api.watch(path + "?watch=true&timeoutSeconds=1") as w:
            names = [w.next_event() for _ in range(3)]
            self.assertIsNone(w.next_event(), "timeoutSeconds ends the stream cleanly")
        self.assertEqual(len(names), 3)

    def test_statefulsets(self):
        status, sts = self.get("/apis/apps/v1/namespaces/default/statefulsets/ukko")
        self.assertEqual(status, 200, sts)
        self.assertEqual((sts["kind"], sts["spec"]["replicas"], sts["spec"]["selector"]),
                         ("StatefulSet", 3, {"matchLabels": {"app": "ukko"}}))
        _, lst = self.get("/apis/apps/v1/namespaces/default/statefulsets")
        self.assertEqual((lst["kind"], [s["metadata"]["name"] for s in lst["items"]]), ("StatefulSetList", ["ukko"]))
        body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "posted"},
                "spec": {"replicas": 2, "serviceName": "posted", "selector": {"matchLabels": {"app": "posted"}},
                         "template": {"metadata": {"labels": {"app": "posted"}},
                                      "spec": {"containers": [{"name": "ukko", "image": "ukko:dev"}]}}}}
        created = self.ok("POST", "/apis/apps/v1/namespaces/default/statefulsets", body)
        self.assertEqual((created["metadata"]["generation"], created["spec"]["replicas"]), (1, 2))
        scale = self.ok("GET", "/apis/apps/v1/namespaces/default/statefulsets/posted/scale")
        self.assertEqual((scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]),
                         ("Scale", 2, "app=posted"))
        scale["spec"]["replicas"] = 5
        self.ok("PUT", "/apis/apps/v1/namespaces/default/statefulsets/posted/scale", scale)
        _, sts = self.get("/apis/apps/v1/namespaces/default/statefulsets/posted")
        self.assertEqual(sts["spec"]["replicas"], 5)
        bad = dict(body, metadata={"name": "bad"}, spec=dict(body["spec"], selector={"matchLabels": {"app": "x"}}))
        resp = self.api.request("POST", "/apis/apps/v1/namespaces/default/statefulsets", body=bad)
        self.assertEqual((resp.status, resp.json()["reason"]), (422, "Invalid"))
        gone = self.ok("DELETE", "/apis/apps/v1/namespaces/default/statefulsets/posted")
        self.assertEqual((gone["kind"], gone["status"], gone["details"]["name"]), ("Status", "Success", "posted"))

    def test_namespaces(self):
        _, lst = self.get("/api/v1/namespaces")
        names = [n["metadata"]["name"] for n in lst["items"]]
        for ns in ("default", "kube-system", "ukko"):
            self.assertIn(ns, names)
        status, ns = self.get("/api/v1/namespaces/ukko")
        self.assertEqual((status, ns["kind"], ns["status"]["phase"]), (200, "Namespace", "Active"))
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
        self.ok("POST", "/api/v1/namespaces/doomed/pods", pod_manifest("inside"))
        self.ok("DELETE", "/api/v1/namespaces/doomed")
        self.assertEqual(self.api.request("GET", "/api/v1/namespaces/doomed/pods/inside").status, 404)
        resp = self.api.request("POST", "/api/v1/namespaces/doomed/pods", body=pod_manifest("late"))
        self.assertEqual((resp.status, resp.json()["message"]), (404, 'namespaces "doomed" not found'))

    def test_replace_pods_through_control_api(self):
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "replaced"}})
        with open(os.path.join(OWN_FIXTURES, "terminating-pod.json")) as f:
            fixture = json.load(f)
        for pod in fixture["items"]:
            pod["metadata"]["namespace"] = "replaced"
        _, before = self.get("/api/v1/pods")
        keep = [p for p in before["items"] if p["metadata"]["namespace"] != "replaced"]
        rv = before["metadata"]["resourceVersion"]
        with self.api.watch("/api/v1/namespaces/replaced/pods?watch=true&timeoutSeconds=30&resourceVersion=" + rv) as w:
            self.api.set_pods({"items": keep + fixture["items"]})
            events = [w.next_event() for _ in range(2)]
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in events],
                         [("ADDED", "ukko-0"), ("ADDED", "ukko-1")])
        _, doc = self.get("/api/v1/namespaces/replaced/pods")
        self.assertEqual(contact_points(doc), ["127.0.0.2:8558"])
        self.api.set_pods({"items": keep})
        _, doc = self.get("/api/v1/namespaces/replaced/pods")
        self.assertEqual(doc["items"], [])


class FaultTest(EmulatorCase):
    ARGS = ["--generate-pods", "2"]
    PODS = "/api/v1/namespaces/default/pods"

    def tearDown(self):
        self.api.clear_faults()

    def test_status_fault_with_count(self):
        fault = self.api.add_fault({"path": "/pods$", "status": 500, "count": 2})
        self.assertEqual((fault["id"] > 0, fault["remaining"]), (True, 2))
        for _ in range(2):
            resp = self.api.request("GET", self.PODS)
            self.assertEqual(resp.status, 500)
            body = resp.json()
            self.assertEqual((body["kind"], body["status"], body["reason"], body["code"]),
                             ("Status", "Failure", "InternalError", 500))
        self.assertEqual(self.api.request("GET", self.PODS).status, 200, "count=2 applies to two requests only")
        self.assertEqual(self.api.faults()["faults"], [])

    def test_other_statuses(self):
        for code, reason in ((503, "ServiceUnavailable"), (429, "TooManyRequests"), (504, "Timeout")):
            self.api.add_fault({"path": "^/api/v1/namespaces/default/pods$", "status": code, "count": 1})
            resp = self.api.request("GET", self.PODS)
            self.assertEqual((resp.status, resp.json()["reason"]), (code, reason))
        self.assertEqual(resp.headers.get("Retry-After"), None)
        self.api.add_fault({"path": "pods", "status": 429, "count": 1})
        self.assertEqual(self.api.request("GET", self.PODS).headers.get("Retry-After"), "1")

    def test_method_filter_and_unmatched_paths(self):
        self.api.add_fault({"path": "pods", "method": "POST", "status": 500})
        self.assertEqual(self.api.request("GET", self.PODS).status, 200)
        self.assertEqual(self.api.request("POST", self.PODS, body=pod_manifest("x")).status, 500)
        self.assertEqual(self.api.request("GET", "/version").status, 200)

    def test_raw_body(self):
        self.api.add_fault({"path": "pods", "body": "{not json", "count": 1})
        resp = self.api.request("GET", self.PODS)
        self.assertEqual((resp.status, resp.body), (200, b"{not json"))
        self.api.add_fault({"path": "pods", "status": 502, "body": "<html>bad gateway</html>",
                            "content_type": "text/html", "count": 1})
        resp = self.api.request("GET", self.PODS)
        self.assertEqual((resp.status, resp.headers["Content-Type"]), (502, "text/html"))

    def test_delay(self):
        self.api.add_fault({"path": "pods", "delay_ms": 20000, "count": 1})
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.api.request("GET", self.PODS, timeout=0.5)
        self.api.add_fault({"path": "pods", "delay_ms": 50, "count": 1})
        self.assertEqual(self.api.request("GET", self.PODS).status, 200, "a delayed answer still comes")

    def test_truncate(self):
        self.api.add_fault({"path": "pods", "truncate_bytes": 100, "count": 1})
        conn = self.api.connect()
        try:
            conn.request("GET", self.PODS, headers={"Authorization": "Bearer " + self.api.token()})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertGreater(int(resp.getheader("Content-Length")), 100)
            with self.assertRaises(http.client.IncompleteRead) as cm:
                resp.read()
            self.assertEqual(len(cm.exception.partial), 100)
        finally:
            conn.close()
        self.assertEqual(self.api.request("GET", self.PODS).status, 200)

    def test_truncated_watch(self):
        self.api.add_fault({"path": "pods", "truncate_bytes": 50, "count": 1})
        with self.api.watch(self.PODS + "?watch=true&timeoutSeconds=30") as w:
            with self.assertRaises((http.client.IncompleteRead, ValueError, http.client.HTTPException)):
                w.next_event()

    def test_drop(self):
        self.api.add_fault({"path": "pods", "drop": True, "count": 1})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.api.request("GET", self.PODS)

    def test_bad_fault_specs(self):
        for spec in ({"path": "("}, {"status": "500"}, {"status": 99}, {"delay_ms": -1}, {"unknown": 1}, []):
            resp = self.api.request("POST", "/emulator/v1/faults", body=spec)
            self.assertEqual(resp.status, 400, spec)

    def test_request_counts(self):
        self.api.reset_requests()
        for _ in range(3):
            self.api.request("GET", self.PODS + "?labelSelector=app%3Dukko")
        self.api.request("GET", "/api/v1/namespaces/default/pods/ukko-0")
        counts = self.api.requests()
        self.assertEqual(counts["paths"], {self.PODS: 3, self.PODS + "/ukko-0": 1})
        self.assertEqual(counts["total"], 4)
        self.assertEqual(counts["recent"][0]["query"], "labelSelector=app%3Dukko")

    def test_ctl_cli(self):
        def ctl(*args):
            return subprocess.run([sys.executable, EMULATOR, "ctl", "--state-dir", self.emu.state_dir] + list(args),
                                  capture_output=True, text=True, timeout=60)
        proc = ctl("fault", '{"path": "pods$", "status": 503, "count": 1}')
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["status"], 503)
        self.assertEqual(self.api.request("GET", self.PODS).status, 503)
        self.api.reset_requests()
        self.api.request("GET", self.PODS)
        proc = ctl("requests")
        self.assertEqual(json.loads(proc.stdout)["paths"], {self.PODS: 1})
        ctl("fault", '{"path": "pods$", "status": 500}')
        self.assertEqual(json.loads(ctl("clear-faults").stdout), {"cleared": 1})
        proc = ctl("request", "GET", "/api/v1/namespaces/default/pods/ukko-1")
        self.assertEqual((proc.returncode, json.loads(proc.stdout)["metadata"]["name"]), (0, "ukko-1"))
        proc = ctl("fault", "{bad json")
        self.assertNotEqual(proc.returncode, 0)


class TokenRotationTest(EmulatorCase):
    ARGS = ["--generate-pods", "1"]
    PODS = "/api/v1/namespaces/default/pods"

    def test_rotation(self):
        path = os.path.join(self.emu.state_dir, "token")
        old = self.api.token()
        inode = os.stat(path).st_ino
        self.assertEqual(self.api.rotate_token()["token_path"], path)
        new = self.api.token()
        self.assertNotEqual(new, old)
        self.assertNotEqual(os.stat(path).st_ino, inode, "the token file is replaced by a rename")
        self.assertEqual(self.api.request("GET", self.PODS, token=old).body, UNAUTHORIZED)
        self.assertEqual(self.api.request("GET", self.PODS, token=new).status, 200)
        if KUBECTL:
            out = self.kubectl("get", "pods", "-o", "name", kubeconfig=True).stdout
            self.assertEqual(out.split(), ["pod/ukko-0"], "the kubeconfig follows the rotation")
        # With grace, the previous token keeps working next to the new one.
        self.api.rotate_token(grace=True)
        newer = self.api.token()
        self.assertEqual(self.api.request("GET", self.PODS, token=new).status, 200)
        self.assertEqual(self.api.request("GET", self.PODS, token=newer).status, 200)
        self.api.rotate_token()
        self.assertEqual(self.api.request("GET", self.PODS, token=new).status, 401)
        self.assertEqual(self.api.request("GET", self.PODS, token=newer).status, 401)
        self.assertEqual(self.api.request("GET", self.PODS, token=self.api.token("token-forbidden")).status, 403)


class TerminationDelayTest(EmulatorCase):
    ARGS = ["--generate-pods", "2", "--termination-delay-ms", "300"]
    PODS = "/api/v1/namespaces/default/pods"

    def test_graceful_delete_keeps_pod_terminating(self):
        _, doc = self.get(self.PODS)
        rv = doc["metadata"]["resourceVersion"]
        with self.api.watch(self.PODS + "?watch=true&timeoutSeconds=30&resourceVersion=" + rv) as w:
            deleted = self.ok("DELETE", self.PODS + "/ukko-1")
            self.assertIn("deletionTimestamp", deleted["metadata"])
            modified = w.next_event()
            self.assertEqual(modified["type"], "MODIFIED")
            self.assertIn("deletionTimestamp", modified["object"]["metadata"])
            # Discovery must now leave it out, although it is still listed and Running.
            self.assertEqual(w.next_event()["type"], "DELETED")
        self.assertEqual(self.api.request("GET", self.PODS + "/ukko-1").status, 404)
        # gracePeriodSeconds=0 deletes at once.
        self.ok("DELETE", self.PODS + "/ukko-0", {"gracePeriodSeconds": 0})
        self.assertEqual(self.api.request("GET", self.PODS + "/ukko-0").status, 404)


class ScaleTest(EmulatorCase):
    ARGS = ["--generate-pods", "10000", "--quiet"]

    def test_ten_thousand_pods(self):
        _, doc = self.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dukko")
        self.assertEqual(len(doc["items"]), 10000)
        self.assertEqual(len({p["status"]["podIP"] for p in doc["items"]}), 10000)
        self.assertTrue(all(p["status"]["phase"] == "Running" for p in doc["items"]))
        names, cont = [], ""
        while True:
            _, page = self.get("/api/v1/namespaces/default/pods?limit=2500" + ("&continue=" + cont if cont else ""))
            names += [p["metadata"]["name"] for p in page["items"]]
            cont = page["metadata"].get("continue")
            if not cont:
                break
        self.assertEqual(len(set(names)), 10000)
        _, one = self.get("/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dukko-9999")
        self.assertEqual([p["metadata"]["name"] for p in one["items"]], ["ukko-9999"])
        if KUBECTL:
            out = self.kubectl("get", "pods", "-o", "name").stdout
            self.assertEqual(len(out.split()), 10000)


# ---------------------------------------------------------------------------

class SharedFixturesTest(unittest.TestCase):
    """The recorded responses of ../shared/k8s-fixtures, served byte for byte."""

    CASES = {
        "pods.json": ("appName=pekko-cluster-tooling-example",
                      [("management", None, ["172.17.0.4:10001", "172.17.0.6:10001"]),
                       (None, None, ["172.17.0.4:8558", "172.17.0.6:8558"])]),
        "multi-container-pod.json": ("app.kubernetes.io/name=mesh",
                                     [("management", None, ["10.8.7.9:8558"]),
                                      ("management", "user-function", ["10.8.7.9:8558"]),
                                      ("management", "cloudstate-sidecar", [])]),
        "multi-container-pod-pending.json": ("app.kubernetes.io/name=mesh", [("management", None, [])]),
    }

    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(SHARED_FIXTURES):
            raise unittest.SkipTest("the recorded fixtures are not beside the checkout (looked for %s); "
                                    "skipping the byte-for-byte checks" % SHARED_FIXTURES)

    def check_served(self, name):
        selector, expectations = self.CASES[name]
        path = os.path.join(SHARED_FIXTURES, name)
        with open(path, "rb") as f:
            fixture = json.loads(f.read())
        with EmulatorProcess(["--pods", path, "--quiet"]) as emu:
            ns = fixture["items"][0]["metadata"]["namespace"]
            from urllib.parse import quote
            resp = emu.client.request("GET", "/api/v1/namespaces/%s/pods?labelSelector=%s" % (ns, quote(selector)))
            self.assertEqual(resp.status, 200, resp.body[:300])
            served = json.loads(resp.body)
            # The list's resourceVersion is the file's, unless an item is newer (these
            # recordings have items newer than their list): a watch from it must
            # not replay what the list showed.
            newest = max(int(p["metadata"]["resourceVersion"]) for p in fixture["items"])
            self.assertEqual(served["metadata"]["resourceVersion"],
                             str(max(int(fixture["metadata"]["resourceVersion"]), newest)))
            self.assertEqual(len(served["items"]), len(fixture["items"]))
            for want, got in zip(fixture["items"], served["items"]):
                self.assertEqual(got, want)
                self.assertEqual(compact(got), compact(want), "same fields, values and order")
                self.assertIn(compact(want).encode("utf-8"), resp.body, "served byte for byte")
            for port_name, container, points in expectations:
                self.assertEqual(contact_points(served, port_name, container), points,
                                 "%s port=%s container=%s" % (name, port_name, container))
            resp = emu.client.request("GET", "/api/v1/namespaces/%s/pods?fieldSelector=status.phase%%3DRunning" % ns)
            running = [p["metadata"]["name"] for p in json.loads(resp.body)["items"]]
            self.assertEqual(running, [p["metadata"]["name"] for p in fixture["items"]
                                       if p["status"].get("phase") == "Running"])

    def test_pods(self):
        self.check_served("pods.json")

    def test_multi_container_pod(self):
        self.check_served("multi-container-pod.json")

    def test_multi_container_pod_pending(self):
        self.check_served("multi-container-pod-pending.json")


class OwnFixturesTest(unittest.TestCase):
    """tests/emulator/fixtures: served faithfully, and their expected.json holds."""

    def test_fixtures(self):
        with open(os.path.join(OWN_FIXTURES, "expected.json")) as f:
            expected = json.load(f)
        files = sorted(k for k in expected if not k.startswith("_"))
        self.assertEqual(files, sorted(f for f in os.listdir(OWN_FIXTURES) if f.endswith(".json") and f != "expected.json"))
        for name in files:
            with self.subTest(fixture=name):
                path = os.path.join(OWN_FIXTURES, name)
                with open(path) as f:
                    fixture = json.load(f)
                with EmulatorProcess(["--pods", path, "--quiet", "--namespace", "ukko"]) as emu:
                    resp = emu.client.request("GET", "/api/v1/namespaces/ukko/pods?labelSelector=app%3Dukko")
                    served = json.loads(resp.body)
                    self.assertEqual(served["metadata"]["resourceVersion"], fixture["metadata"]["resourceVersion"])
                    self.assertEqual([compact(p) for p in served["items"]], [compact(p) for p in fixture["items"]])
                    for case in expected[name]:
                        self.assertEqual(contact_points(served, case["port_name"], case["container"]),
                                         sorted(case["contact_points"]), case)


# ---------------------------------------------------------------------------

class LifecycleTest(unittest.TestCase):
    def test_ready_line_state_files_and_sigterm(self):
        root = tempfile.mkdtemp(prefix="ukko-emulator-test-")
        self.addCleanup(shutil.rmtree, root, True)
        emu = EmulatorProcess(["--namespace", "ukko"], root=root)
        self.addCleanup(emu.stop)
        emu.start()
        self.assertEqual(sorted(emu.info), ["ca", "host", "port", "state_dir", "token_path"])
        self.assertEqual(emu.info["host"], "127.0.0.1")
        for name in ("ca.crt", "server.crt", "server.key", "token", "token-forbidden", "namespace", "kubeconfig", "port"):
            self.assertTrue(os.path.exists(os.path.join(emu.state_dir, name)), name)
        self.assertEqual(read(os.path.join(emu.state_dir, "namespace")), "ukko")
        self.assertEqual(int(read(os.path.join(emu.state_dir, "port"))), emu.info["port"])
        self.assertEqual(emu.info["ca"], os.path.join(emu.state_dir, "ca.crt"))
        # The certificate names 127.0.0.1, ::1 and localhost; the CA verifies it.
        cert = ssl._ssl._test_decode_cert(os.path.join(emu.state_dir, "server.crt"))
        self.assertEqual(sorted(cert["subjectAltName"]),
                         sorted([("IP Address", "127.0.0.1"), ("IP Address", "0:0:0:0:0:0:0:1"), ("DNS", "localhost")]))
        ctx = ssl.create_default_context(cafile=emu.info["ca"])
        ctx.set_alpn_protocols(["h2", "http/1.1"])  # what Go clients offer
        with socket.create_connection(("127.0.0.1", emu.info["port"])) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
        token = read(os.path.join(emu.state_dir, "token"))
        emu.client.request("GET", "/api/v1/namespaces/ukko/pods")
        self.assertEqual(emu.terminate(signal.SIGTERM), 0)
        log = emu.log_tail(1000)
        self.assertNotIn(token, log, "tokens never reach the log")
        self.assertIn("GET /api/v1/namespaces/ukko/pods 200", log)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", emu.info["port"]), timeout=5).close()

    def test_sigint_and_restart_in_same_state_dir(self):
        root = tempfile.mkdtemp(prefix="ukko-emulator-test-")
        self.addCleanup(shutil.rmtree, root, True)
        first = EmulatorProcess(["--generate-pods", "1"], root=root)
        self.addCleanup(first.stop)
        first.start()
        ca = read(os.path.join(first.state_dir, "ca.crt"))
        token = first.client.token()
        port = first.info["port"]
        self.assertEqual(first.terminate(signal.SIGINT), 0)
        second = EmulatorProcess(["--generate-pods", "1", "--port", str(port)], root=root)
        self.addCleanup(second.stop)
        second.start()
        self.assertEqual(second.info["port"], port)
        self.assertEqual(read(os.path.join(second.state_dir, "ca.crt")), ca, "the CA survives a restart")
        self.assertEqual(second.client.request("GET", "/api/v1/namespaces/default/pods", token=token).status, 200)
        self.assertEqual(second.terminate(), 0)

    def test_exits_when_stdin_closes(self):
        """What happens when the test process is killed: the child ends and cleans up."""
        emu = EmulatorProcess([])
        self.addCleanup(emu.stop)
        emu.start()
        emu.proc.stdin.close()
        self.assertEqual(emu.proc.wait(30), 0)
        self.assertFalse(os.path.exists(emu.root), "the child removes its temporary directory")

    def test_bad_options(self):
        root = tempfile.mkdtemp(prefix="ukko-emulator-test-")
        self.addCleanup(shutil.rmtree, root, True)
        for args in (["--statefulset", "ukko"], ["--generate-pods", "-1"], ["--pods", os.path.join(root, "missing.json")]):
            proc = subprocess.run([sys.executable, EMULATOR, "--state-dir", os.path.join(root, "s")] + args,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            self.assertNotEqual(proc.returncode, 0, args)
            self.assertEqual(proc.stdout, "", "no ready line for %s" % args)


def _main():
    """`--kubectl`: only the tests that drive the real kubectl (ctest's
    emulator_kubectl, which says "skipped" when kubectl is missing);
    `--no-kubectl`: every other test (ctest's emulator)."""
    argv = list(sys.argv)
    only = "--kubectl" in argv
    without = "--no-kubectl" in argv
    argv = [a for a in argv if a not in ("--kubectl", "--no-kubectl")]
    kubectl_cases = (KubectlTest, KubectlIPv6LegacyDiscoveryTest)
    if not (only or without):
        unittest.main(argv=argv)
        return
    if only and KUBECTL is None:
        print("SKIPPED: kubectl is not installed (scripts/install-kubectl.sh builds it)")
        sys.exit(0)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for case in list(globals().values()):
        if isinstance(case, type) and issubclass(case, unittest.TestCase) and case is not EmulatorCase:
            for test in loader.loadTestsFromTestCase(case):
                uses_kubectl = case in kubectl_cases or "kubectl" in test._testMethodName
                if uses_kubectl == only:
                    suite.addTest(test)
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    _main()
