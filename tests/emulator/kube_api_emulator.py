#!/usr/bin/env python3
"""A Kubernetes API server emulator for ukko's tests (Python 3.11, standard library).

Serves over HTTPS, with its own CA and bearer tokens, the part of the API that
ukko's discovery and kubectl use: pods (selectors, watch, get/create/patch/
delete, logs), namespaces, apps/v1 StatefulSets (with scale), events (empty),
the discovery documents, plus a control API under /emulator/v1 for faults,
token rotation and request counts. One thread per connection
(ThreadingHTTPServer); state lives in emulator_store.Store under one lock.
With --controller, a StatefulSet controller and a kubelet (emulator_controller,
emulator_kubelet) run each StatefulSet's pods as real ukko processes on
loopback addresses. See README.md.

    kube_api_emulator.py --state-dir DIR [--port 0] [--pods FILE] ...
    kube_api_emulator.py --state-dir DIR --controller --ukko build/ukko --statefulset ukko=3
    kube_api_emulator.py ctl --state-dir DIR fault '{"path": "pods", "status": 500}'
"""

import argparse
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import threading
import traceback
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emulator_control import Tokens  # noqa: E402
from emulator_controller import StatefulSetController  # noqa: E402
from emulator_handler import App, Handler, log, set_quiet  # noqa: E402
from emulator_kubelet import Kubelet, parse_addresses  # noqa: E402
from emulator_resources import ApiError  # noqa: E402
from emulator_resources import PODS, STATEFULSETS, pod_template, statefulset_template  # noqa: E402
from emulator_state import ensure_certs, make_token, server_url, write_atomic, write_kubeconfig  # noqa: E402
from emulator_store import Store  # noqa: E402


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        # HTTPServer.server_bind would do a reverse DNS lookup (getfqdn): skip it.
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):
            log("%s connection ended: %s" % (client_address[0], exc))
        else:
            log("%s unexpected error:\n%s" % (client_address[0], traceback.format_exc()))


class Server6(Server):
    address_family = socket.AF_INET6


def _load_pods(store, path, namespace):
    with open(path, "rb") as f:
        doc = json.load(f)
    if isinstance(doc, dict) and doc.get("kind") == "Pod":
        items, list_rv = [doc], None
    elif isinstance(doc, dict) and isinstance(doc.get("items"), list):
        items = doc["items"]
        try:
            list_rv = int((doc.get("metadata") or {}).get("resourceVersion"))
        except (TypeError, ValueError):
            list_rv = None
    else:
        raise SystemExit("%s: expected a PodList (or a Pod), got %s" % (path, type(doc).__name__))
    for item in items:
        store.load(PODS, item, namespace, list_rv)
    return len(items)


def _load_statefulsets(store, path, namespace):
    """A StatefulSet (or a List of them) in JSON, created as kubectl apply would."""
    with open(path, "rb") as f:
        doc = json.load(f)
    items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
    for item in items:
        if not isinstance(item, dict) or item.get("kind") != "StatefulSet":
            raise SystemExit("%s: expected a StatefulSet (or a List of them)" % path)
        ns = (item.get("metadata") or {}).get("namespace") or namespace
        store.ensure_namespace(ns, emit=False)
        try:
            store.create(STATEFULSETS, ns, item)
        except ApiError as e:
            raise SystemExit("%s: %s" % (path, e.message)) from None
    return len(items)


def _int_ip(n):
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kube_api_emulator.py",
                                description="Kubernetes API emulator for ukko tests (see README.md).")
    p.add_argument("--state-dir", required=True, help="where ca.crt, token, kubeconfig, port ... are written")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1, ::1 ...)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (written to DIR/port)")
    p.add_argument("--namespace", default="default", help="the namespace in DIR/namespace")
    p.add_argument("--pods", action="append", default=[], metavar="FILE",
                   help="PodList JSON to serve, kept byte for byte (repeatable)")
    p.add_argument("--generate-pods", type=int, default=0, metavar="N",
                   help="N Running pods labelled app=ukko with IPs 10.x.y.z and port management 8558")
    p.add_argument("--statefulset", action="append", default=[], metavar="NAME=REPLICAS",
                   help="an apps/v1 StatefulSet to create in the namespace (repeatable)")
    p.add_argument("--statefulset-file", action="append", default=[], metavar="FILE",
                   help="a StatefulSet (or a List of them) in JSON to create at start (repeatable)")
    c = p.add_argument_group("controller", "run StatefulSets' pods as real ukko processes")
    c.add_argument("--controller", action="store_true",
                   help="run a StatefulSet controller and a kubelet: each pod of a StatefulSet is a "
                        "`ukko` process on its own address")
    c.add_argument("--ukko", metavar="BIN", default=os.environ.get("UKKO_BIN"),
                   help="the ukko program the pods run (default: $UKKO_BIN)")
    c.add_argument("--pod-addresses", metavar="RANGE", default="127.0.0.2-127.0.0.20",
                   help="addresses for the pods: A-B, A-lastbyte, a CIDR, or a comma list "
                        "(default 127.0.0.2-127.0.0.20); a pod keeps its address by name")
    c.add_argument("--probe-period-ms", type=int, default=500,
                   help="readiness probe period, in place of the manifest's periodSeconds (default 500)")
    c.add_argument("--restart-backoff-ms", type=int, default=500,
                   help="wait before restarting a process that exited; doubles per crash up to 10 s "
                        "(default 500)")
    p.add_argument("--termination-delay-ms", type=int, default=0,
                   help="keep a gracefully deleted pod, terminating, this long (0: delete at once)")
    p.add_argument("--pod-cidr", default="10.244.0.0/16", help="pod IPs for pods created through the API")
    p.add_argument("--missing-namespace", choices=("404", "empty"), default="404",
                   help="LIST in a namespace that does not exist: 404 NotFound (default) or, as a "
                        "real API server does, an empty list")
    p.add_argument("--no-aggregated-discovery", action="store_true",
                   help="serve only the legacy discovery documents (clients then fall back)")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="exit when stdin reaches end of file (so a dying parent takes it along)")
    p.add_argument("--remove-on-exit", metavar="DIR",
                   help="remove DIR (which must hold the state directory) when exiting, so that a "
                        "test killed with SIGKILL leaves no temporary directory behind")
    p.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = p.parse_args(argv)
    if args.remove_on_exit:
        root = os.path.abspath(args.remove_on_exit)
        state = os.path.abspath(args.state_dir)
        if root == os.path.sep or os.path.commonpath([root, state]) != root:
            p.error("--remove-on-exit %s must be the state directory or hold it" % args.remove_on_exit)
    if args.generate_pods < 0 or args.generate_pods > 1000000:
        p.error("--generate-pods must be in [0, 1000000]")
    for spec in args.statefulset:
        name, _, replicas = spec.partition("=")
        if not name or not replicas.isdigit():
            p.error("--statefulset takes NAME=REPLICAS, got %r" % spec)
    if args.controller:
        if not args.ukko:
            p.error("--controller needs --ukko BIN (or UKKO_BIN in the environment): the program "
                    "each pod runs")
        args.ukko = os.path.abspath(args.ukko)
        if not os.access(args.ukko, os.X_OK):
            p.error("--ukko %s: not an executable file (build it first: cmake --build build)" % args.ukko)
        try:
            args.pod_addresses = parse_addresses(args.pod_addresses)
        except ValueError as e:
            p.error("--pod-addresses: %s" % e)
        if args.probe_period_ms < 10 or args.restart_backoff_ms < 0:
            p.error("--probe-period-ms must be at least 10, --restart-backoff-ms not negative")
    return args


def _read_or_make_token(path, namespace, account):
    try:
        with open(path) as f:
            token = f.read().strip()
        if token:
            return token
    except OSError:
        pass
    token = make_token(namespace, account)
    write_atomic(path, token, 0o600)
    return token


def main(argv):
    if argv and argv[0] == "ctl":
        from emulator_client import ctl_main
        return ctl_main(argv[1:])
    args = parse_args(argv)
    set_quiet(args.quiet)
    args.state_dir = os.path.abspath(args.state_dir)
    os.makedirs(args.state_dir, exist_ok=True)
    ensure_certs(args.state_dir, args.host)
    token = _read_or_make_token(os.path.join(args.state_dir, "token"), args.namespace, "ukko")
    forbidden = _read_or_make_token(os.path.join(args.state_dir, "token-forbidden"), args.namespace, "ukko")
    write_atomic(os.path.join(args.state_dir, "namespace"), args.namespace)

    store = Store(pod_cidr=args.pod_cidr, termination_delay=args.termination_delay_ms / 1000.0)
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease", args.namespace):
        store.ensure_namespace(ns, emit=False)
    for path in args.pods:
        n = _load_pods(store, path, args.namespace)
        log("loaded %d pods from %s" % (n, path))
    base = (10 << 24) | (1 << 16)
    for i in range(args.generate_pods):
        store.load(PODS, pod_template("ukko-%d" % i, args.namespace, _int_ip(base + 1 + i), {"app": "ukko"}))
    for spec in args.statefulset:
        name, _, replicas = spec.partition("=")
        store.create(STATEFULSETS, args.namespace, statefulset_template(name, args.namespace, int(replicas)))
    for path in args.statefulset_file:
        n = _load_statefulsets(store, path, args.namespace)
        log("created %d StatefulSet(s) from %s" % (n, path))
    with store.cond:
        store.compacted_rv = store.rv

    app = App(args, store, Tokens(token, forbidden, args.namespace))
    cls = Server6 if ":" in args.host else Server
    httpd = cls((args.host, args.port), Handler)
    httpd.app = app
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(args.state_dir, "server.crt"), os.path.join(args.state_dir, "server.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    app.port = httpd.server_address[1]
    write_atomic(os.path.join(args.state_dir, "port"), "%d\n" % app.port)
    write_atomic(os.path.join(args.state_dir, "host"), args.host + "\n")
    write_kubeconfig(os.path.join(args.state_dir, "kubeconfig"), server_url(args.host, app.port),
                     os.path.join(args.state_dir, "ca.crt"), token, args.namespace)

    def on_signal(signum, frame):
        app.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_with_stdin:
        def watch_stdin():
            # os.read, not sys.stdin: a thread blocked in a buffered read would
            # make the interpreter abort at exit.
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            app.stop.set()
        threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    server_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                     name="accept", daemon=True)
    server_thread.start()
    controller = None
    try:
        if args.controller:
            # Started from the main thread, which lives until the end: the
            # kubelet's worker threads start the processes (see emulator_kubelet).
            app.kubelet = Kubelet(store, args.ukko, args.pod_addresses, args.state_dir, args.host,
                                  app.port, args.namespace, args.probe_period_ms / 1000.0,
                                  args.restart_backoff_ms / 1000.0)
            controller = StatefulSetController(store, app.kubelet)
            controller.start()
            log("controller: pods run %s on %s..%s" % (args.ukko, args.pod_addresses[0],
                                                     args.pod_addresses[-1]))
        log("serving %s (state in %s)" % (server_url(args.host, app.port), args.state_dir))
        sys.stdout.write(json.dumps({"port": app.port, "host": args.host, "state_dir": args.state_dir,
                                     "ca": os.path.join(args.state_dir, "ca.crt"),
                                     "token_path": os.path.join(args.state_dir, "token")},
                                    separators=(",", ":")) + "\n")
        sys.stdout.flush()
        while not app.stop.wait(0.25):
            pass
        log("stopping")
    finally:
        if controller is not None:
            controller.stop()  # every pod: SIGTERM, then SIGKILL
    httpd.shutdown()
    store.close()
    httpd.server_close()
    if args.remove_on_exit:
        shutil.rmtree(args.remove_on_exit, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
