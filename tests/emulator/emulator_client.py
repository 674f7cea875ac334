"""Client side of the emulator, for Python tests and for shell use (`ctl`).

    with EmulatorProcess(["--generate-pods", "3"]) as emu:
        status, body = emu.client.get_json("/api/v1/namespaces/default/pods")
        emu.client.add_fault({"path": "/pods$", "status": 500, "count": 1})

    python3 kube_api_emulator.py ctl --state-dir DIR fault '{"path": "pods", "status": 500}'

Each request opens its own connection (nothing is shared between threads).
The token is read from DIR/token at every request, so a rotation is picked up.
"""

import argparse
import http.client
import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

__all__ = ["Client", "EmulatorProcess", "EMULATOR", "ctl_main"]

EMULATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kube_api_emulator.py")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


class Client:
    def __init__(self, state_dir, host=None, port=None, timeout=30.0):
        self.state_dir = state_dir
        self.host = host or _read(os.path.join(state_dir, "host"), "127.0.0.1")
        self.port = port or int(_read(os.path.join(state_dir, "port")))
        self.timeout = timeout
        self.ctx = ssl.create_default_context(cafile=os.path.join(state_dir, "ca.crt"))

    def token(self, name="token"):
        return _read(os.path.join(self.state_dir, name))

    def connect(self, timeout=None):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout or self.timeout)

    def request(self, method, path, body=None, headers=None, token=True, timeout=None):
        """One request. token: True (DIR/token), None (no header), or a token string."""
        hdrs = {"Accept": "application/json"}
        if token is True:
            token = self.token()
        if token:
            hdrs["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, dict(resp.getheaders()), data)
        finally:
            conn.close()

    def get_json(self, path, **kw):
        resp = self.request("GET", path, **kw)
        return resp.status, resp.json()

    def watch(self, path, timeout=30.0, token=True):
        """Open a watch; returns a Watch whose next_event() reads one event."""
        hdrs = {"Accept": "application/json"}
        if token is True:
            token = self.token()
        if token:
            hdrs["Authorization"] = "Bearer " + token
        conn = self.connect(timeout)
        conn.request("GET", path, headers=hdrs)
        return Watch(conn, conn.getresponse())

    # -- control API ---------------------------------------------------------

    def _control(self, method, path, body=None):
        resp = self.request(method, "/emulator/v1/" + path, body=body)
        if resp.status >= 300:
            raise RuntimeError("emulator control %s %s: %d %s" % (method, path, resp.status, resp.body.decode()))
        return resp.json()

    def add_fault(self, spec):
        return self._control("POST", "faults", spec)

    def clear_faults(self):
        return self._control("DELETE", "faults")

    def faults(self):
        return self._control("GET", "faults")

    def rotate_token(self, grace=False):
        return self._control("POST", "tokens/rotate", {"grace": grace})

    def set_pods(self, pod_list):
        return self._control("PUT", "pods", pod_list)

    def requests(self):
        return self._control("GET", "requests")

    def reset_requests(self):
        return self._control("DELETE", "requests")

    def state(self):
        return self._control("GET", "state")


class Watch:
    def __init__(self, conn, resp):
        self.conn = conn
        self.resp = resp
        self.status = resp.status

    def next_event(self):
        """The next event as a dict, or None at the end of the stream."""
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        if default is None:
            raise
        return default


class EmulatorProcess:
    """The emulator as a child process, with a state directory it owns.

    stop() (or leaving the with block) ends the process (SIGTERM, then SIGKILL)
    and removes the temporary directory. The child also exits by itself if this
    process dies, because its stdin (a pipe from us) then reaches end of file,
    and then removes the temporary directory itself (--remove-on-exit) unless
    root was given (a caller's directory outlives the process).
    """

    def __init__(self, args=(), root=None, start_timeout=30.0):
        self.args = list(args)
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="ukko-emulator-")
        self.state_dir = os.path.join(self.root, "state")
        self.log_path = os.path.join(self.root, "emulator.log")
        self.start_timeout = start_timeout
        self.proc = None
        self.info = None
        self.client = None

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, EMULATOR, "--state-dir", self.state_dir, "--exit-with-stdin"]
                + (["--remove-on-exit", self.root] if self.own_root else []) + self.args,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        if not line.endswith(b"\n"):
            self.stop(remove=False)
            raise RuntimeError("emulator did not start (exit %s); its log:\n%s" % (self.proc.returncode, self.log_tail()))
        self.info = json.loads(line)
        self.client = Client(self.state_dir, self.info["host"], self.info["port"])
        return self

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def terminate(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop the process; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        return self.proc.returncode

    def stop(self, remove=True):
        self.terminate()
        if remove and self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def ctl_main(argv):
    p = argparse.ArgumentParser(prog="kube_api_emulator.py ctl",
                                description="Drive a running emulator through its control API.")
    p.add_argument("--state-dir", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fault", help="add a fault: JSON {path, status, delay_ms, truncate_bytes, body, count, ...}")
    f.add_argument("spec")
    sub.add_parser("faults", help="list the faults")
    c = sub.add_parser("clear-faults", help="remove every fault, or one by id")
    c.add_argument("id", nargs="?", type=int)
    r = sub.add_parser("rotate-token", help="write a new DIR/token; the old one stops working")
    r.add_argument("--grace", action="store_true", help="keep the old token valid too")
    s = sub.add_parser("set-pods", help="replace every pod with a PodList from FILE (- for stdin)")
    s.add_argument("file")
    sub.add_parser("requests", help="request counts per path")
    sub.add_parser("reset-requests", help="zero the request counts")
    sub.add_parser("state", help="resourceVersion, object counts, port")
    q = sub.add_parser("request", help="any request: METHOD PATH [JSON-BODY]")
    q.add_argument("method")
    q.add_argument("path")
    q.add_argument("body", nargs="?")
    q.add_argument("--content-type", default="application/json",
                   help="for PATCH: application/merge-patch+json, application/json-patch+json ...")
    args = p.parse_args(argv)
    try:
        client = Client(args.state_dir)
        if args.cmd == "fault":
            out = client.add_fault(json.loads(args.spec))
        elif args.cmd == "faults":
            out = client.faults()
        elif args.cmd == "clear-faults":
            out = client._control("DELETE", "faults" if args.id is None else "faults/%d" % args.id)
        elif args.cmd == "rotate-token":
            out = client.rotate_token(args.grace)
        elif args.cmd == "set-pods":
            text = sys.stdin.read() if args.file == "-" else open(args.file).read()
            out = client.set_pods(json.loads(text))
        elif args.cmd == "requests":
            out = client.requests()
        elif args.cmd == "reset-requests":
            out = client.reset_requests()
        elif args.cmd == "state":
            out = client.state()
        else:
            resp = client.request(args.method.upper(), args.path, body=args.body,
                                  headers={"Content-Type": args.content_type} if args.body else None)
            sys.stdout.write(resp.body.decode("utf-8", "replace") + "\n")
            return 0 if resp.status < 300 else 1
    except (OSError, ValueError, RuntimeError) as e:
        sys.stderr.write("kube_api_emulator ctl: %s\n" % e)
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
