#!/usr/bin/env python3
"""The local picture of ukko on Kubernetes (README's first command runs this
through scripts/demo.sh, after installing and building).

Starts the Kubernetes API emulator (tests/emulator) with its StatefulSet
controller, which runs the StatefulSet of tests/emulator/ukko-statefulset.json:
one real `ukko run` process per pod, each on its own 127.0.0.x address, with
the environment a pod has (the API server, the service-account token, CA and
namespace) and a keyring made for the run. The nodes find each other through
the API over TLS, the lowest forms the cluster and the others join it
(docs/bootstrap.md). Then prints, every second, each pod's phase, its probes
(/alive, /ready with the reason), restarts and memory, and, from every node
that serves GET /cluster/members, the members it sees (Joining, then Up).
`kubectl get pods` is shown once.
Ctrl-C (or --seconds N) stops everything: the emulator stops every pod with
SIGTERM, and this checks that no process is left.

    python3 scripts/demo.py [--ukko build/ukko] [--replicas 3] [--seconds N]
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "emulator"))

from emulator_client import EmulatorProcess  # noqa: E402

MANIFEST = os.path.join(REPO, "tests", "emulator", "ukko-statefulset.json")
PODS = "/api/v1/namespaces/default/pods"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="demo", description="ukko pods on a local Kubernetes API emulator")
    p.add_argument("--ukko", default=os.path.join(REPO, "build", "ukko"), help="the ukko program (build/ukko)")
    p.add_argument("--replicas", type=int, default=3, help="pods of the StatefulSet (3)")
    p.add_argument("--pod-addresses", default="127.0.0.2-127.0.0.20",
                   help="the pods' addresses (127.0.0.2-127.0.0.20)")
    p.add_argument("--manifest", default=MANIFEST, help="the StatefulSet, JSON (%s)" % os.path.relpath(MANIFEST, REPO))
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: at Ctrl-C)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between tables (1)")
    args = p.parse_args(argv)
    if not os.access(args.ukko, os.X_OK):
        p.error("%s is not built: run scripts/demo.sh (it builds), or cmake --build build" % args.ukko)
    if args.replicas < 0 or args.interval <= 0:
        p.error("--replicas must be 0 or more, --interval above 0")
    return args


def http_get(host, path, port=8558, timeout=0.5):
    """(status, body text) of GET http://host:port/path; (None, why) if it fails."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 20).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, (os.strerror(e.errno) if getattr(e, "errno", None) else str(e) or type(e).__name__)
    finally:
        conn.close()


def short_node(node):
    """ukko://ukko@127.0.0.2:7355 -> 127.0.0.2:7355"""
    return node.rsplit("@", 1)[-1] if node else "?"


def probe_node(ip, port):
    """What a node says about itself: probes, RSS, and the members it sees."""
    out = {}
    out["alive"], _ = http_get(ip, "/alive", port)
    code, body = http_get(ip, "/ready", port)
    reason = ""
    if code != 200:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        reason = "; ".join(lines[1:] if len(lines) > 1 else lines)
    out["ready"], out["ready_reason"] = code, reason
    code, body = http_get(ip, "/metrics", port)
    out["rss"] = None
    if code == 200:
        for line in body.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                out["rss"] = float(line.split()[1])
    code, body = http_get(ip, "/cluster/members", port)
    out["members_code"] = code
    out["members"] = None
    if code == 200:
        try:
            out["members"] = json.loads(body)
        except ValueError:
            pass
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
    return {"name": meta["name"], "ip": status.get("podIP") or "", "port": port, "phase": phase,
            "k8s_ready": ready, "restarts": cs.get("restartCount", 0),
            "running": "running" in state}


def ordinal(name):
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def render(pods, nodes, started):
    """The lines of one table."""
    lines = []
    ready = sum(1 for p in pods if p["k8s_ready"])
    running = sum(1 for p in pods if p["phase"] == "Running")
    lines.append("%s  +%.0fs  StatefulSet ukko: %d pod(s), %d Running, %d ready"
                 % (time.strftime("%H:%M:%S"), time.monotonic() - started, len(pods), running, ready))
    head = ("POD", "IP", "STATUS", "READY", "RESTARTS", "RSS", "/alive", "MEMBER", "/ready")
    rows = []
    for p in pods:
        n = nodes.get(p["name"]) or {}
        rss = "%.1f MiB" % (n["rss"] / 1048576) if n.get("rss") else "-"
        ready_cell = "-"
        if n.get("ready") is not None:
            ready_cell = str(n["ready"]) + (" " + n["ready_reason"] if n["ready_reason"] else "")
        if len(ready_cell) > 90:
            ready_cell = ready_cell[:89] + "…"
        member = "-"
        m = n.get("members")
        if m:
            mine = [x for x in m.get("members") or [] if x.get("node") == m.get("selfNode")]
            member = mine[0].get("status", "?") if mine else "not a member"
        rows.append((p["name"], p["ip"] or "-", p["phase"], "1/1" if p["k8s_ready"] else "0/1",
                     str(p["restarts"]), rss, str(n.get("alive") or "-"), member, ready_cell))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    views = [(p["name"], nodes[p["name"]]["members"]) for p in pods
             if (nodes.get(p["name"]) or {}).get("members")]
    if views:
        lines.append("cluster members, as each node sees them:")
        for name, m in views:
            members = ", ".join("%s %s" % (short_node(x.get("node")), x.get("status", "?"))
                                for x in m.get("members") or [])
            unreachable = len(m.get("unreachable") or [])
            lines.append("  %-8s %s%s%s" % (name, members or "(none)",
                                             "  leader %s" % short_node(m["leader"]) if m.get("leader") else "",
                                             "  unreachable %d" % unreachable if unreachable else ""))
    elif pods:
        codes = {n.get("members_code") for n in nodes.values()}
        if codes <= {404}:
            lines.append("cluster members: no node serves GET /cluster/members (no membership running), "
                         "so /ready stays 500")
        else:
            lines.append("cluster members: not known yet")
    return lines


class Screen:
    """Redraws the table in place on a terminal; prints one after another otherwise."""

    def __init__(self):
        self.tty = sys.stdout.isatty()
        self.drawn = 0

    def table(self, lines):
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
        self.drawn = len(lines)

    def text(self, text):
        """Text that stays (above the tables that follow)."""
        if self.tty and self.drawn:
            sys.stdout.write("\033[%dF\033[J" % self.drawn)
            self.drawn = 0
        sys.stdout.write(text)
        sys.stdout.flush()


def kubectl_get_pods(emu):
    kubectl = shutil.which("kubectl")
    config = os.path.join(emu.state_dir, "kubeconfig")
    if kubectl is None:
        return "(kubectl is not installed; with it: kubectl --kubeconfig %s get pods -o wide)\n" % config
    env = dict(os.environ, HOME=emu.root)
    env.pop("KUBECONFIG", None)
    cmd = [kubectl, "--kubeconfig", config, "--cache-dir", os.path.join(emu.root, "kube-cache"),
           "get", "pods", "-o", "wide"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        out = proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        out = "kubectl failed: %s\n" % e
    return "$ kubectl get pods -o wide\n" + out


def leftovers(root):
    """Processes whose command line or environment names root (the pods' do)."""
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


def run(args):
    root = tempfile.mkdtemp(prefix="ukko-demo-")
    with open(args.manifest) as f:
        sts = json.load(f)
    sts.setdefault("spec", {})["replicas"] = args.replicas
    # The cluster's key, as a Secret would hold it: a keyring made for this
    # run in the emulator's state directory (it keeps files it did not make),
    # named in every pod's environment. Gossip is then encrypted and
    # authenticated, as in a real deployment.
    keyring = write_keyring(os.path.join(root, "state"))
    for c in sts["spec"]["template"]["spec"]["containers"][:1]:
        c.setdefault("env", []).append({"name": "UKKO_CLUSTER_KEYRING_PATH", "value": keyring})
    manifest = os.path.join(root, "statefulset.json")
    with open(manifest, "w") as f:
        json.dump(sts, f)
    emu = EmulatorProcess(["--controller", "--ukko", args.ukko, "--pod-addresses", args.pod_addresses,
                           "--statefulset-file", manifest], root=root)
    screen = Screen()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    interrupted = False
    try:
        emu.start()
        url = "https://%s:%d" % (emu.info["host"], emu.info["port"])
        version = subprocess.run([args.ukko, "--version"], capture_output=True, text=True).stdout.strip()
        config = os.path.join(emu.state_dir, "kubeconfig")
        screen.text(
            "%s: StatefulSet ukko, %d pod(s) on %s, one `ukko run` process each\n"
            "Kubernetes API emulator: %s (TLS, service-account token); pod logs in %s\n"
            "Meanwhile, in another shell:  export KUBECONFIG=%s\n"
            "  kubectl get pods -w   kubectl scale statefulset ukko --replicas=5   "
            "kubectl delete pod ukko-1   kubectl logs ukko-0\n"
            "Ctrl-C stops everything.\n\n"
            % (version or "ukko", args.replicas, args.pod_addresses, url,
               os.path.join(emu.state_dir, "pods"), config))
        started = time.monotonic()
        shown_kubectl = False
        while True:
            status, doc = emu.client.get_json(PODS + "?labelSelector=app%3Dukko")
            pods = sorted((pod_row(p) for p in doc.get("items") or []), key=lambda p: ordinal(p["name"])) \
                if status == 200 else []
            futures = {p["name"]: pool.submit(probe_node, p["ip"], p["port"]) for p in pods if p["ip"]}
            nodes = {name: f.result() for name, f in futures.items()}
            all_running = len(pods) == args.replicas and all(p["running"] for p in pods)
            if not shown_kubectl and (all_running or time.monotonic() - started > 10):
                screen.text(kubectl_get_pods(emu) + "\n")
                shown_kubectl = True
            screen.table(render(pods, nodes, started))
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C must not cut this short: the emulator stops every pod.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stdout.write("\n%sstopping: the emulator sends SIGTERM to every pod ...\n"
                         % ("Ctrl-C: " if interrupted else ""))
        sys.stdout.flush()
        pool.shutdown()
        code = emu.terminate()
        emulator_log = emu.log_tail(30)
        logs = os.path.join(emu.state_dir, "pods")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name), errors="replace") as f:
                lines = [line.rstrip() for line in f if line.strip()]
            last = [line for line in lines if "node:" in line and "stop" in line][-1:] or lines[-1:]
            sys.stdout.write("  %s: %s\n" % (name[:-4].split("_", 1)[-1], " | ".join(last)))
        left = leftovers(root)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(root, ignore_errors=True)
    if code != 0:
        sys.stdout.write("the emulator exited with %s; the end of its log:\n%s" % (code, emulator_log))
        return 1
    if left:
        sys.stdout.write("processes were left behind and have been killed: %s\n" % left)
        return 1
    sys.stdout.write("stopped: every pod and the emulator; nothing left running.\n")
    return 0


def main(argv):
    args = parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
