"""The emulator's kubelet: runs each pod the StatefulSet controller made as a real
`ukko` process on its own loopback address, probes it, reports its status, and
stops it when the pod is deleted (SIGTERM, the grace period, SIGKILL).

One worker thread per pod incarnation (uid). It alone starts, watches and stops
that pod's process, and it outlives the process: the process is started through
emulator_pod_exec.py with PR_SET_PDEATHSIG bound to that thread, so not even a
SIGKILLed emulator leaves a process behind. Workers write their pod's status
through the Store; Kubelet.lock guards only the table of workers and is never
held while calling the Store (the Store calls Kubelet.runs under its own lock).
"""

import copy
import http.client
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from emulator_handler import log as _log
from emulator_resources import PODS, ApiError, now_rfc3339

__all__ = ["AddressPool", "Kubelet", "parse_addresses"]

POD_EXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulator_pod_exec.py")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Passed through to pods, so a sanitizer build of ukko can run under the controller.
PASS_THROUGH = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "TZ")
BACKOFF_MAX = 10.0        # seconds: the longest wait before restarting a crashed process
BACKOFF_RESET = 10.0      # a process that ran this long starts the backoff afresh
SHUTDOWN_GRACE = 5.0      # emulator exit: SIGTERM, then SIGKILL after at most this long
TICK = 0.1                # how often a worker looks at its pod and its process
# A deleted pod's object goes at least this long after its deletion began: a
# real kubelet notices a stopped container at its next relist (every second).
# It also keeps `kubectl delete pod` of a StatefulSet's pod from racing the
# pod made again under the same name (kubectl lists the pod after its DELETE
# and then waits for a DELETED event of that name).
REMOVE_AFTER = 2.0
MAX_ADDRESSES = 65536


def log(msg):
    _log("kubelet: " + msg)


def parse_addresses(spec):
    """'127.0.0.2-127.0.0.20', '127.0.0.2-20', a CIDR, or a comma list of those."""
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if "/" in part:
            net = ipaddress.ip_network(part, strict=False)
            out += list(net.hosts()) if net.num_addresses > 2 else list(net)
        elif "-" in part:
            first, _, last = part.partition("-")
            a = ipaddress.ip_address(first)
            if "." not in last and ":" not in last:  # 127.0.0.2-20: the last byte
                last = first.rsplit(".", 1)[0] + "." + last
            b = ipaddress.ip_address(last)
            if a.version != b.version or int(b) < int(a):
                raise ValueError("%s: the range must go up, within one address family" % part)
            if int(b) - int(a) >= MAX_ADDRESSES:
                raise ValueError("%s: more than %d addresses" % (part, MAX_ADDRESSES))
            out += [ipaddress.ip_address(n) for n in range(int(a), int(b) + 1)]
        else:
            out.append(ipaddress.ip_address(part))
        if len(out) > MAX_ADDRESSES:
            raise ValueError("more than %d addresses" % MAX_ADDRESSES)
    if not out:
        raise ValueError("no address in %r" % spec)
    seen = set()
    return [str(a) for a in out if not (a in seen or seen.add(a))]


class AddressPool:
    """Pod addresses, sticky by pod name: a pod made again gets its address back."""

    def __init__(self, addresses):
        self.addresses = list(addresses)
        self.sticky = {}  # (ns, name) -> address
        self.lock = threading.Lock()

    def acquire(self, key, exists):
        """The address of pod key, or None when every address is held by a pod
        that still exists (exists(key) says whether a pod of that name does)."""
        with self.lock:
            if key in self.sticky:
                return self.sticky[key]
            taken = set(self.sticky.values())
            free = [a for a in self.addresses if a not in taken]
            if not free:
                # Take back the address of a name that has no pod now.
                for other, addr in list(self.sticky.items()):
                    if not exists(other):
                        del self.sticky[other]
                        free = [addr]
                        break
            if not free:
                return None
            self.sticky[key] = free[0]
            return free[0]


class ConfigError(Exception):
    """The pod's spec cannot be turned into a process (CreateContainerConfigError)."""


def _field_ref(pod, path, ip):
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    m = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    values = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP") or "", "status.podIP": ip, "status.podIPs": ip,
    }
    if path not in values:
        raise ConfigError("env fieldRef %r is not supported by the emulator's kubelet" % path)
    return values[path]


def _expand(text, env):
    """$(VAR) references to variables defined before, as a kubelet expands them."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class PodWorker:
    """One pod incarnation (uid): its process, probes and status."""

    def __init__(self, kubelet, ns, name, uid, previous):
        self.k = kubelet
        self.ns, self.name, self.uid = ns, name, uid
        self.previous = previous
        self.thread = threading.Thread(target=self._run, name="pod %s/%s" % (ns, name), daemon=True)
        self.proc = None
        self.ip = None
        self.port = 8558
        self.container = {}
        self.final_state = None    # the container's state once stopped for good
        self.starts = 0
        self.run_since = 0.0
        self.log_path = os.path.join(kubelet.log_dir, "%s_%s.log" % (ns, name))
        self.log_start = None      # offset in log_path where the current run's output starts
        self.previous_log = None   # (start, end) of the run before it
        self.lock = threading.Lock()  # guards proc and the log offsets for readers (logs)
        # What the status is made of.
        self.phase = "Pending"
        self.scheduled = None      # None, or (reason, message) while no address is free
        self.start_time = None
        self.started_at = None
        self.waiting = ("ContainerCreating", None)
        self.ready = False
        self.restarts = 0
        self.last_terminated = None
        self.transitions = {}
        self.published = None

    # -- the worker's life -------------------------------------------------

    def start(self):
        self.thread.start()

    def _run(self):
        try:
            if self.previous is not None:
                # The pod's name (and address) were held by the incarnation before:
                # it must be stopped before this one starts (the sandbox is freed).
                self.previous.thread.join()
                self.previous = None
            self._main()
        except Exception:
            log("pod %s/%s: unexpected error:\n%s" % (self.ns, self.name, traceback.format_exc()))
        finally:
            self._kill_now()
            self.k._worker_done(self)

    def _pod(self):
        """The pod object, or None once it is gone (or replaced by another uid)."""
        try:
            obj = self.k.store.get(PODS, self.ns, self.name).obj
        except ApiError:
            return None
        return obj if obj["metadata"].get("uid") == self.uid else None

    def _main(self):
        k = self.k
        pod = self._pod()
        if pod is None:
            return
        while self.ip is None:
            self.ip = k.pool.acquire((self.ns, self.name), self._name_exists)
            if self.ip is not None:
                break
            self.scheduled = ("Unschedulable", "no free address in --pod-addresses (%d addresses, "
                              "all held by pods)" % len(k.pool.addresses))
            self._publish()
            if k.stopping.wait(1.0):
                return
            pod = self._pod()
            if pod is None or "deletionTimestamp" in pod["metadata"]:
                self._finish(pod)
                return
        self.scheduled = None
        spec = pod.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        self.container = container
        self.port = self._port(container)
        probe = container.get("readinessProbe")
        try:
            argv, env = self._command(pod, container)
            error = None
        except ConfigError as e:
            argv, env, error = None, None, str(e)
            self.waiting = ("CreateContainerConfigError", error)
            log("pod %s/%s: %s" % (self.ns, self.name, error))
        self._publish()
        next_start, next_probe, backoff = 0.0, 0.0, 0.0
        successes = failures = 0
        while True:
            pod = self._pod()
            if pod is None:  # force-deleted (grace 0) or its namespace went: no grace
                self._kill_now()
                return
            if k.stopping.is_set():
                self._stop(min(self._grace(pod), SHUTDOWN_GRACE))
                return
            if "deletionTimestamp" in pod["metadata"]:
                remove_at = time.monotonic() + REMOVE_AFTER
                self._stop(self._grace(pod))
                self._publish()
                while time.monotonic() < remove_at and not k.stopping.is_set() and self._pod() is not None:
                    time.sleep(0.05)
                self._finish(self._pod())
                return
            now = time.monotonic()
            if self.proc is None:
                if error is None and now >= next_start:
                    self._start_process(argv, env)
                    successes = failures = 0
                    next_probe = now
            elif self.proc.poll() is not None:
                ran = now - self.run_since
                backoff = self.k.backoff if ran >= BACKOFF_RESET or not backoff else min(backoff * 2, BACKOFF_MAX)
                self._exited(backoff)
                next_start = now + backoff
            elif now >= next_probe:
                next_probe = now + self.k.probe_period
                if probe is None:
                    ok = True
                else:
                    ok = self._probe(probe)
                successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
                if not self.ready and successes >= int((probe or {}).get("successThreshold") or 1):
                    self.ready = True
                elif self.ready and failures >= int((probe or {}).get("failureThreshold") or 3):
                    self.ready = False
            self._publish()
            k.stopping.wait(TICK)

    def _name_exists(self, key):
        try:
            self.k.store.get(PODS, key[0], key[1])
            return True
        except ApiError:
            return False

    @staticmethod
    def _grace(pod):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        try:
            return max(0.0, float(grace))
        except (TypeError, ValueError):
            return 30.0

    @staticmethod
    def _port(container):
        for p in container.get("ports") or []:
            if p.get("name") == "management" and p.get("containerPort"):
                return int(p["containerPort"])
        return 8558

    def _probe_port(self, port):
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for p in self.container.get("ports") or []:
            if p.get("name") == port and p.get("containerPort"):
                return int(p["containerPort"])
        return self.port

    # -- the process -------------------------------------------------------

    def _command(self, pod, container):
        k = self.k
        env = {"PATH": PATH, "HOSTNAME": self.name}
        env.update({n: os.environ[n] for n in PASS_THROUGH if n in os.environ})
        env.update(k.cluster_env(self.ns))
        for item in container.get("env") or []:
            name = item.get("name")
            if not name:
                continue
            if "valueFrom" in item:
                ref = item["valueFrom"] or {}
                if "fieldRef" in ref:
                    env[name] = _field_ref(pod, (ref["fieldRef"] or {}).get("fieldPath", ""), self.ip)
                    continue
                sel = next(iter(ref.values()), None) or {}
                if sel.get("optional"):
                    continue
                raise ConfigError("env %s: valueFrom %s is not supported by the emulator's kubelet "
                                  "(only fieldRef)" % (name, ",".join(ref)))
            env[name] = _expand(str(item.get("value", "")), env)
        # The pod's own network: 0.0.0.0 in a pod is its own address, here the
        # address the kubelet gave it (the manifest cannot change that).
        env["UKKO_MANAGEMENT_HOSTNAME"] = self.ip
        command = container.get("command")
        args = [_expand(str(a), env) for a in (container.get("args") if container.get("args") is not None
                                               else ([] if command else ["run"]))]
        if command:
            if os.path.basename(str(command[0])) != "ukko":
                raise ConfigError("command %s: the emulator's kubelet runs only ukko (--ukko %s)"
                                  % (json.dumps(command), k.ukko))
            args = [_expand(str(a), env) for a in command[1:]] + args
        return [k.ukko] + args, env

    def _start_process(self, argv, env):
        k = self.k
        self.starts += 1
        with self.lock:
            with open(self.log_path, "ab") as f:
                header_at = f.tell()
                f.write(("==== emulator kubelet: %s/%s (uid %s) on %s, start %d: %s\n"
                         % (self.ns, self.name, self.uid, self.ip, self.starts,
                            " ".join(argv))).encode())
                f.flush()
                start = f.tell()
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", POD_EXEC, str(os.getpid())] + argv,
                        env=env, cwd=k.state_dir, stdin=subprocess.DEVNULL, stdout=f,
                        stderr=subprocess.STDOUT, start_new_session=True)
                except OSError as e:
                    f.write(("==== emulator kubelet: cannot start: %s\n" % e).encode())
                    raise
            if self.log_start is not None:
                self.previous_log = (self.log_start, header_at)
            self.log_start = start
            self.proc = proc
        self.run_since = time.monotonic()
        now = now_rfc3339()
        if self.phase == "Pending":
            self.phase = "Running"
            self.start_time = now
        self.started_at = now
        self.waiting = None
        self.ready = False
        log("pod %s/%s: started pid %d on %s:%d" % (self.ns, self.name, proc.pid, self.ip, self.port))

    def _exited(self, backoff):
        code = self.proc.returncode
        log("pod %s/%s: process %d exited with %s; restarting in %.1f s"
            % (self.ns, self.name, self.proc.pid, code if code >= 0 else "signal %d" % -code, backoff))
        self.last_terminated = self._terminated(self.proc)
        with self.lock:
            self.proc = None
        self.restarts += 1
        self.ready = False
        self.started_at = None
        self.waiting = ("CrashLoopBackOff", "back-off %s restarting failed container=%s pod=%s_%s(%s)"
                        % (_duration(backoff), self.container.get("name", ""), self.name, self.ns, self.uid))

    def _stop(self, grace):
        """SIGTERM, up to grace seconds, then SIGKILL; a force delete cuts the wait short."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._reap()
            return
        log("pod %s/%s: stopping pid %d (SIGTERM, grace %.0f s)" % (self.ns, self.name, proc.pid, grace))
        self.ready = False
        if not self.k.stopping.is_set():
            self._publish()
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            if self.k.stopping.is_set():
                deadline = min(deadline, self.k.stopping_at + SHUTDOWN_GRACE)  # the emulator exits
            elif self._pod() is None:
                break  # deleted with grace 0 meanwhile
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if proc.poll() is None:
            log("pod %s/%s: pid %d still running: SIGKILL" % (self.ns, self.name, proc.pid))
        self._kill_now()

    def _kill_now(self):
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            log("pod %s/%s: pid %d does not die" % (self.ns, self.name, proc.pid))
        self.final_state = self._terminated(proc)
        self._reap()

    def _terminated(self, proc):
        """A container state for an ended process (killed by signal N: exit code 128 + N)."""
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        exit_code = code if code >= 0 else 128 - code
        return {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                               "startedAt": self.started_at, "finishedAt": now_rfc3339(),
                               "containerID": "emulator://%d" % proc.pid}}

    def _reap(self):
        with self.lock:
            self.proc = None

    def _finish(self, pod):
        """The process is gone: the pod object goes too (unless the emulator stops)."""
        if pod is not None and not self.k.stopping.is_set():
            self.k.store.finish_pod_deletion(self.ns, self.name, self.uid)

    # -- probes and status -------------------------------------------------

    def _probe(self, probe):
        timeout = float(probe.get("timeoutSeconds") or 1)
        if "httpGet" in probe:
            get = probe["httpGet"] or {}
            conn = http.client.HTTPConnection(get.get("host") or self.ip,
                                              self._probe_port(get.get("port", self.port)), timeout=timeout)
            try:
                headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*", "Connection": "close"}
                for h in get.get("httpHeaders") or []:
                    headers[h.get("name", "")] = h.get("value", "")
                conn.request("GET", get.get("path") or "/", headers=headers)
                resp = conn.getresponse()
                resp.read(64 << 10)
                return 200 <= resp.status < 400
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()
        if "tcpSocket" in probe:
            try:
                port = self._probe_port((probe["tcpSocket"] or {}).get("port", self.port))
                socket.create_connection((self.ip, port), timeout).close()
                return True
            except OSError:
                return False
        return False  # exec and grpc probes are not emulated: never ready

    def _condition(self, type_, ok, reason=None, message=None):
        status = "True" if ok else "False"
        last = self.transitions.get(type_)
        if last is None or last[0] != status:
            self.transitions[type_] = last = (status, now_rfc3339())
        cond = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": last[1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _status(self):
        c = self.container
        running = self.proc is not None
        if self.scheduled:
            return {"phase": "Pending", "conditions": [
                self._condition("PodScheduled", False, *self.scheduled)], "qosClass": "BestEffort"}
        not_ready = None if self.ready else (
            "ContainersNotReady", "containers with unready status: [%s]" % c.get("name", ""))
        status = {"phase": self.phase, "conditions": [
            self._condition("PodReadyToStartContainers", self.ip is not None),
            self._condition("Initialized", True),
            self._condition("Ready", self.ready, *(not_ready or ())),
            self._condition("ContainersReady", self.ready, *(not_ready or ())),
            self._condition("PodScheduled", True)]}
        if self.ip:
            status.update({"hostIP": self.k.store.host_ip, "hostIPs": [{"ip": self.k.store.host_ip}],
                           "podIP": self.ip, "podIPs": [{"ip": self.ip}]})
        if self.start_time:
            status["startTime"] = self.start_time
        if running:
            state = {"running": {"startedAt": self.started_at}}
        elif self.final_state:
            state = self.final_state
        else:
            reason, message = self.waiting or ("ContainerCreating", None)
            state = {"waiting": dict({"reason": reason}, **({"message": message} if message else {}))}
        cs = {"name": c.get("name", ""), "state": state, "lastState": self.last_terminated or {},
              "ready": self.ready and running, "restartCount": self.restarts,
              "image": c.get("image", ""), "imageID": "", "started": running}
        if running:
            cs["containerID"] = "emulator://%d" % self.proc.pid
        status["containerStatuses"] = [cs]
        status["qosClass"] = "BestEffort"
        return status

    def _publish(self):
        """Write the pod's status when it changed (a MODIFIED event for watchers)."""
        status = self._status()
        if status == self.published:
            return
        store = self.k.store
        with store.cond:
            if store.closed:
                return
            try:
                entry = store.get(PODS, self.ns, self.name)
            except ApiError:
                return
            if entry.obj["metadata"].get("uid") != self.uid:
                return
            new = dict(entry.obj, status=copy.deepcopy(status))
            new["metadata"] = dict(new["metadata"])
            new["metadata"].pop("resourceVersion", None)
            try:
                store.replace(PODS, self.ns, self.name, new, subresource="status")
            except ApiError as e:
                log("pod %s/%s: status update failed: %s" % (self.ns, self.name, e.message))
                return
        self.published = status

    # -- logs ----------------------------------------------------------------

    def read_log(self, previous=False):
        """(bytes of the current run, or of the one before it, still running?)."""
        with self.lock:
            if previous:
                if self.previous_log is None:
                    raise ApiError(400, 'previous terminated container "%s" in pod "%s" not found'
                                   % (self.container.get("name", ""), self.name))
                start, end = self.previous_log
            else:
                if self.log_start is None:
                    raise ApiError(400, 'container "%s" in pod "%s" is waiting to start: %s'
                                   % (self.container.get("name", ""), self.name,
                                      (self.waiting or ("ContainerCreating",))[0]))
                start, end = self.log_start, None
            running = self.proc is not None and not previous
        with open(self.log_path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        if end is None:
            # Up to a header of a later start (the run ended and another began).
            cut = data.find(b"\n==== emulator kubelet: ")
            if cut >= 0:
                data = data[:cut + 1]
        return data, running


def _duration(seconds):
    return "%dms" % (seconds * 1000) if seconds < 1 else "%gs" % round(seconds, 1)


class Kubelet:
    """Runs the pods the StatefulSet controller hands it (see the module doc)."""

    def __init__(self, store, ukko, addresses, state_dir, api_host, api_port, namespace,
                 probe_period=0.5, backoff=0.5):
        self.store = store
        self.ukko = ukko
        self.pool = AddressPool(addresses)
        self.state_dir = state_dir
        self.log_dir = os.path.join(state_dir, "pods")
        os.makedirs(self.log_dir, exist_ok=True)
        self.api_host, self.api_port = api_host, api_port
        self.namespace = namespace
        self.probe_period = probe_period
        self.backoff = backoff
        self.lock = threading.Lock()
        self.workers = {}   # uid -> PodWorker
        self.by_name = {}   # (ns, name) -> the newest PodWorker of that name
        self.stopping = threading.Event()
        self.stopping_at = None

    def cluster_env(self, ns):
        """What every pod's environment has: the API server and the service account."""
        host = self.api_host
        url_host = "[%s]" % host if ":" in host else host
        ns_path = os.path.join(self.state_dir, "namespace")
        if ns != self.namespace:
            ns_path = os.path.join(self.state_dir, "serviceaccount", ns, "namespace")
            if not os.path.exists(ns_path):
                os.makedirs(os.path.dirname(ns_path), exist_ok=True)
                with open(ns_path, "w") as f:
                    f.write(ns)
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api_port),
            "KUBERNETES_PORT": "tcp://%s:%d" % (url_host, self.api_port),
            "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH": os.path.join(self.state_dir, "token"),
            "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH": os.path.join(self.state_dir, "ca.crt"),
            "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH": ns_path,
        }

    def runs(self, uid):
        """Called by the Store (under its lock): is this pod's deletion ours to finish?"""
        with self.lock:
            return uid in self.workers

    def run_pod(self, ns, name, uid):
        with self.lock:
            if uid in self.workers or self.stopping.is_set():
                return
            w = PodWorker(self, ns, name, uid, self.by_name.get((ns, name)))
            self.workers[uid] = w
            self.by_name[(ns, name)] = w
        w.start()

    def _worker_done(self, w):
        with self.lock:
            self.workers.pop(w.uid, None)
            if self.by_name.get((w.ns, w.name)) is w:
                del self.by_name[(w.ns, w.name)]

    def worker(self, ns, name, uid=None):
        with self.lock:
            w = self.by_name.get((ns, name))
        return w if w is not None and (uid is None or w.uid == uid) else None

    def pids(self):
        """{(ns, name): pid} of the processes running now."""
        with self.lock:
            workers = list(self.workers.values())
        out = {}
        for w in workers:
            proc = w.proc
            if proc is not None:
                out[(w.ns, w.name)] = proc.pid
        return out

    def shutdown(self):
        """Stop every pod: SIGTERM, at most SHUTDOWN_GRACE, then SIGKILL."""
        self.stopping_at = time.monotonic()
        self.stopping.set()
        deadline = self.stopping_at + SHUTDOWN_GRACE + 5
        while True:
            with self.lock:
                workers = list(self.workers.values())
            if not workers:
                return
            for w in workers:
                w.thread.join(max(0.0, deadline - time.monotonic()))
                if w.thread.is_alive():
                    w._kill_now()
                    w.thread.join(5)
                    self._worker_done(w)
