"""The HTTP side of the emulator: one Handler per connection, serving the
Kubernetes API (discovery, pods, namespaces, statefulsets, events, watch) and
the control API under /emulator/v1.

Runs in the connection threads of kube_api_emulator.Server. Shared state is
App (store, tokens, faults, stats); the handler holds no state across requests
but the connection's. Errors become Status bodies through ApiError.
"""

import base64
import binascii
import json
import os
import select
import socket
import sys
import ssl
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import emulator_discovery as discovery
from emulator_control import Faults, RequestStats
from emulator_patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from emulator_protobuf import ProtobufError, decode_namespace
from emulator_resources import (NAMESPACES, PODS, ApiError, by_path, fault_status, group_versions,
                                partial_metadata, status_body, to_table)
from emulator_selectors import SelectorError, parse_field_selector, parse_label_selector, \
    selector_from_match_labels
from emulator_state import make_token, server_url, write_atomic, write_kubeconfig
from emulator_store import Entry, dumps, typed, typed_raw

__all__ = ["App", "Handler", "log", "set_quiet", "rotate_token"]

MAX_BODY = 16 << 20
WATCH_POLL = 1.0          # seconds between checks that a watcher is still there
BOOKMARK_EVERY = 5.0      # seconds of quiet before a BOOKMARK, when the client allows them
DEFAULT_WATCH_TIMEOUT = 1800

_LOG_LOCK = threading.Lock()
_QUIET = False


def set_quiet(quiet):
    global _QUIET
    _QUIET = quiet


def log(msg):
    if _QUIET:
        return
    line = "%s %s\n" % (time.strftime("%H:%M:%S"), msg)
    with _LOG_LOCK:
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


class App:
    """Everything the request threads share."""

    def __init__(self, args, store, tokens):
        self.args = args
        self.store = store
        self.tokens = tokens
        self.faults = Faults()
        self.stats = RequestStats()
        self.stop = threading.Event()
        self.state_dir = args.state_dir
        self.namespace = args.namespace
        self.host = args.host
        self.port = 0
        self.kubelet = None  # emulator_kubelet.Kubelet with --controller


class _ClientGone(Exception):
    pass


def _one(query, key, default=""):
    vals = query.get(key)
    return vals[-1] if vals else default


def _true(query, key):
    return _one(query, key).lower() in ("true", "1")


def _labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def _encode_continue(rv, key, offset):
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": "%s/%s\u0000" % key, "offset": offset}
    return base64.b64encode(json.dumps(token, separators=(",", ":")).encode()).decode()


def _decode_continue(text):
    try:
        token = json.loads(base64.b64decode(text, validate=True))
        ns, _, name = token["start"].rstrip("\u0000").partition("/")
        return int(token["rv"]), (ns, name), int(token["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue key is not valid: incorrect encoded start resourceVersion "
                       "(version meta.k8s.io/v1)") from None


def _scale_of(sts):
    meta = sts["metadata"]
    spec = sts.get("spec") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                "creationTimestamp") if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": (sts.get("status") or {}).get("replicas", 0),
                       "selector": selector_from_match_labels(spec.get("selector"))}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection is closed after this
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle
    # and the client's delayed ACK add ~40 ms to every small response.
    disable_nagle_algorithm = True

    # -- plumbing ------------------------------------------------------------

    def setup(self):
        self.request.settimeout(30)
        self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):  # http.server's own messages (timeouts, bad requests)
        log("%s %s" % (self.client_address[0], fmt % args))

    @property
    def app(self):
        return self.server.app

    def _start(self, code, content_type, length=None, headers=None):
        self.send_response_only(code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", content_type)
        self.send_header("Date", self.date_time_string())
        self.send_header("X-Kubernetes-Pf-Flowschema-Uid", "e1a4c2b0-0000-4000-8000-000000000001")
        self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", "e1a4c2b0-0000-4000-8000-000000000002")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.sent_status = code

    def send_bytes(self, code, data, content_type="application/json", headers=None):
        self._start(code, content_type, len(data), headers)
        if self.command == "HEAD":
            return
        if self.truncate is not None and self.truncate < len(data):
            self.wfile.write(data[:self.truncate])
            self.sent_bytes += self.truncate
            self._abort()
            return
        self.wfile.write(data)
        self.sent_bytes += len(data)

    def send_json(self, code, obj, content_type="application/json", headers=None):
        self.send_bytes(code, obj if isinstance(obj, bytes) else dumps(obj), content_type, headers)

    def _abort(self):
        """End the connection without finishing the response (a truncated reply)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _chunk(self, data):
        if self.truncate is not None:
            room = self.truncate - self.sent_bytes
            if room < len(data):
                self.wfile.write(b"%x\r\n%s" % (len(data), data[:max(room, 0)]))
                self.sent_bytes += max(room, 0)
                self._abort()
                raise _ClientGone()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.sent_bytes += len(data)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise ApiError(413, "Request entity too large: limit is %d" % MAX_BODY,
                                   "RequestEntityTooLarge")
                parts.append(self.rfile.read(size))
                self.rfile.readline(10)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "Request entity too large: limit is %d" % MAX_BODY, "RequestEntityTooLarge")
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def dispatch(self):
        t0 = time.monotonic()
        self.sent_status, self.sent_bytes, self.user, self.truncate, fault_id = 0, 0, "-", None, None
        url = urlsplit(self.path)
        path, method = url.path, self.command
        self.query = parse_qs(url.query, keep_blank_values=True)
        entry = None
        if not path.startswith("/emulator/"):
            # Recorded when it starts, so that a test sees a watch that is still open.
            entry = {"method": method, "path": path, "query": url.query, "status": None, "user": "-"}
            self.app.stats.record(entry)
        try:
            try:
                body = self.read_body()
                if path.startswith("/emulator/"):
                    self.control(method, path, body)
                else:
                    self.app.stats.count(method, path)
                    fault = self.app.faults.take(method, path)
                    if fault is not None:
                        fault_id = fault.id
                        if self.apply_fault(fault):
                            return
                    self.serve(method, path, body)
            except ApiError as e:
                if self.sent_status:
                    raise _ClientGone() from e
                self.send_json(e.code, e.body(), headers=e.headers)
        except (_ClientGone, ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log("error serving %s %s:\n%s" % (method, path, traceback.format_exc()))
            self.close_connection = True
            if not self.sent_status:
                try:
                    self.send_json(500, status_body(500, "Internal error occurred: emulator: %s"
                                                    % traceback.format_exc(limit=1).strip().splitlines()[-1],
                                                    "InternalError"))
                except OSError:
                    pass
        finally:
            ms = (time.monotonic() - t0) * 1000
            log("%s %s %s %s %dB %.0fms user=%s%s" % (
                self.client_address[0], method, self.path, self.sent_status or "-", self.sent_bytes, ms,
                self.user, " fault=%d" % fault_id if fault_id else ""))
            if entry is not None:
                entry["status"], entry["user"] = self.sent_status, self.user

    def apply_fault(self, fault):
        """Apply an injected fault; True when it produced the whole response."""
        if fault.delay and self.app.stop.wait(fault.delay):
            raise _ClientGone()
        if fault.drop:
            self._abort()
            return True
        self.truncate = fault.truncate
        if fault.body is None and fault.status is None:
            return False
        code = fault.status or 200
        data = fault.body.encode("utf-8") if fault.body is not None else dumps(fault_status(code))
        headers = dict(fault.headers)
        if code in (429, 503):
            headers.setdefault("Retry-After", "1")
        self.send_bytes(code, data, fault.content_type, headers)
        return True

    # -- the Kubernetes API ------------------------------------------------

    def serve(self, method, path, body):
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz") and not self.headers.get("Authorization"):
            self.send_bytes(200, b"ok", "text/plain; charset=utf-8")
            return
        auth = self.app.tokens.user(self.headers.get("Authorization"))
        if auth is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        self.user, allowed = auth
        if not parts or parts[0] not in ("api", "apis", "version", "openapi", "healthz", "livez", "readyz"):
            self.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if parts[0] in ("healthz", "livez", "readyz"):
            self.send_bytes(200, b"ok", "text/plain; charset=utf-8")
            return
        resource_request = ((parts[0] == "api" and len(parts) > 2) or (parts[0] == "apis" and len(parts) > 3))
        if not resource_request:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            self.discovery(parts)
            return
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        if group and version not in group_versions().get(group, []) or not group and version != "v1":
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        res, ns, name, sub = self.resolve(group, version, rest)
        verb = self.verb(method, name)
        if not allowed:
            raise self.forbidden(verb, res, sub, name if res is NAMESPACES else ns, name)
        if res is PODS and sub == "log":
            if verb != "get":
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            self.pod_log(ns, name)
            return
        if verb == "list":
            self.list(res, ns)
        elif verb == "watch":
            self.watch(res, ns)
        elif verb == "get":
            self.get(res, ns, name, sub)
        elif verb == "create":
            if sub:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            self.create(res, ns, body)
        elif verb == "update":
            self.update(res, ns, name, sub, body)
        elif verb == "patch":
            self.patch(res, ns, name, sub, body)
        elif verb == "delete":
            if sub:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            self.delete(res, ns, name, body)
        elif verb == "deletecollection":
            self.delete_collection(res, ns, body)

    def resolve(self, group, version, rest):
        not_found = ApiError(404, "the server could not find the requested resource", "NotFound", {})
        inner = by_path(group, version, rest[2]) if len(rest) >= 3 and rest[0] == "namespaces" else None
        if inner is not None and inner.namespaced:
            if len(rest) > 5:
                raise not_found
            res, ns = inner, rest[1]
            name = rest[3] if len(rest) > 3 else None
            sub = rest[4] if len(rest) > 4 else None
        else:
            res = by_path(group, version, rest[0])
            if res is None or len(rest) > 3 or (res.namespaced and len(rest) > 1):
                raise not_found
            ns = None
            name = rest[1] if len(rest) > 1 else None
            sub = rest[2] if len(rest) > 2 else None
        if sub and sub not in res.subresources:
            raise not_found
        return res, ns, name, sub

    def verb(self, method, name):
        if method in ("GET", "HEAD"):
            if name:
                return "get"
            return "watch" if _true(self.query, "watch") else "list"
        table = {"POST": None if name else "create", "PUT": "update" if name else None,
                 "PATCH": "patch" if name else None, "DELETE": "delete" if name else "deletecollection"}
        verb = table.get(method)
        if verb is None:
            raise ApiError(405, "the server does not allow this method on the requested resource",
                           "MethodNotAllowed")
        return verb

    def forbidden(self, verb, res, sub, ns, name):
        rname = res.plural + ("/" + sub if sub else "")
        scope = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
        why = 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            self.user, verb, rname, res.group, scope)
        if name:
            msg = '%s "%s" is forbidden: %s' % (res.qualified, name, why)
        else:
            msg = "%s is forbidden: %s" % (res.qualified, why)
        return ApiError(403, msg, "Forbidden", res.details(name))

    def negotiate(self, table=False, aggregated=False):
        """The response format the Accept header asks for: (kind, version)."""
        accept = self.headers.get("Accept") or "application/json"
        for part in accept.split(","):
            fields = [f.strip() for f in part.split(";")]
            media = fields[0].lower()
            params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
            if media not in ("application/json", "application/*", "*/*"):
                continue
            as_ = params.get("as")
            if as_ is None:
                return "json", None
            if table and as_ in ("Table", "PartialObjectMetadataList", "PartialObjectMetadata") \
                    and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                return ("table" if as_ == "Table" else "partial"), params["v"]
            if aggregated and as_ == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io" \
                    and params.get("v") in discovery.AGGREGATED_TYPES:
                return "aggregated", params["v"]
        raise ApiError(406, "only the following media types are accepted: application/json, "
                       "application/json;as=Table;v=v1;g=meta.k8s.io", "NotAcceptable")

    def discovery(self, parts):
        agg_ok = not self.app.args.no_aggregated_discovery
        if parts == ["version"]:
            self.send_json(200, discovery.version())
        elif parts in (["api"], ["apis"]):
            kind, v = self.negotiate(aggregated=agg_ok)
            if kind == "aggregated":
                doc = discovery.aggregated(parts == ["api"], discovery.AGGREGATED_TYPES[v])
                self.send_json(200, doc, "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList" % v,
                               {"Vary": "Accept"})
            elif parts == ["api"]:
                host = "[%s]" % self.app.host if ":" in self.app.host else self.app.host
                self.send_json(200, discovery.api_versions("%s:%d" % (host, self.app.port)), headers={"Vary": "Accept"})
            else:
                self.send_json(200, discovery.api_group_list(), headers={"Vary": "Accept"})
        elif parts[0] == "api" and len(parts) == 2:
            doc = discovery.resource_list("", parts[1])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
            self.send_json(200, doc)
        elif parts[0] == "apis" and len(parts) in (2, 3):
            doc = discovery.api_group(parts[1]) if len(parts) == 2 else discovery.resource_list(parts[1], parts[2])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
            self.send_json(200, doc)
        elif parts == ["openapi", "v3"]:
            self.send_json(200, discovery.openapi_v3_root())
        elif parts[:2] == ["openapi", "v3"]:
            doc = discovery.openapi_v3_gv("/".join(parts[2:]))
            if doc is None:
                self.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
            else:
                self.send_json(200, doc, headers={"Cache-Control": "public, immutable"})
        else:
            # /openapi/v2 is not served: kubectl then uses its built-in types.
            self.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _selectors(self, res):
        try:
            lsel = parse_label_selector(_one(self.query, "labelSelector"))
            fsel = parse_field_selector(_one(self.query, "fieldSelector"), res.fields)
        except SelectorError as e:
            raise ApiError(400, str(e), "BadRequest") from None
        return lambda obj: lsel(_labels(obj)) and fsel(obj)

    def _check_namespace(self, ns):
        if ns is not None and not self.app.store.namespace_exists(ns):
            if self.app.args.missing_namespace == "empty":
                return False
            raise NAMESPACES.not_found(ns)
        return True

    def list(self, res, ns):
        match = self._selectors(res)
        fmt, version = self.negotiate(table=True)
        if self._check_namespace(ns):
            rv, entries = self.app.store.list(res, ns)
        else:
            rv, entries = self.app.store.rv, []
        entries = [e for e in entries if match(e.obj)]
        meta = {}
        limit = _one(self.query, "limit")
        cont = _one(self.query, "continue")
        start = 0
        if cont:
            rv, after, offset = _decode_continue(cont)
            keys = [self._key(e.obj) for e in entries]
            start = keys.index(after) + 1 if after in keys else min(offset, len(entries))
        page = entries[start:]
        meta["resourceVersion"] = str(rv)
        try:
            limit = int(limit) if limit else 0
        except ValueError:
            raise ApiError(400, 'invalid limit "%s"' % limit) from None
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            meta["continue"] = _encode_continue(rv, self._key(page[-1].obj), start + limit)
            meta["remainingItemCount"] = len(entries) - start - limit
        if fmt == "table":
            include = _one(self.query, "includeObject", "Metadata")
            table = to_table(res, [typed(res, e.obj) for e in page], meta, include, version)
            self.send_json(200, table, "application/json;as=Table;v=%s;g=meta.k8s.io" % version)
        elif fmt == "partial":
            doc = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/" + version,
                   "metadata": meta, "items": [partial_metadata(e.obj, version) for e in page]}
            self.send_json(200, doc, "application/json;as=PartialObjectMetadataList;v=%s;g=meta.k8s.io" % version)
        else:
            head = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta}
            data = dumps(head)[:-1] + b',"items":[' + b",".join(e.raw for e in page) + b"]}"
            self.send_bytes(200, data)

    @staticmethod
    def _key(obj):
        meta = obj.get("metadata") or {}
        return meta.get("namespace", ""), meta.get("name", "")

    def _render_one(self, res, entry):
        """A single object (with kind and apiVersion), or its Table row."""
        if not isinstance(entry, Entry):
            entry = Entry(entry)
        obj = entry.obj
        fmt, version = self.negotiate(table=True)
        if fmt == "table":
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            return dumps(to_table(res, [typed(res, obj)], meta, _one(self.query, "includeObject", "Metadata"),
                                  version)), "application/json;as=Table;v=%s;g=meta.k8s.io" % version
        if fmt == "partial":
            return dumps(partial_metadata(obj, version)), \
                "application/json;as=PartialObjectMetadata;v=%s;g=meta.k8s.io" % version
        return typed_raw(res, entry), "application/json"

    def get(self, res, ns, name, sub):
        entry = self.app.store.get(res, ns, name)
        if sub == "scale":
            self.send_json(200, _scale_of(entry.obj))
            return
        data, ctype = self._render_one(res, entry)
        self.send_bytes(200, data, ctype)

    def pod_log(self, ns, name):
        """GET pods/{name}/log: the output of the process the kubelet runs for it."""
        pod = self.app.store.get(PODS, ns, name).obj
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = _one(self.query, "container")
        if container and container not in containers:
            raise ApiError(400, "container %s is not valid for pod %s" % (container, name))
        kubelet = self.app.kubelet
        worker = kubelet.worker(ns, name, pod["metadata"].get("uid")) if kubelet else None
        if worker is None:
            raise ApiError(400, 'container "%s" in pod "%s" is not running: the emulator runs '
                           "processes only for the pods of StatefulSets, with --controller"
                           % (container or (containers or [""])[0], name))
        previous = _true(self.query, "previous")
        start = worker.log_start
        full, running = worker.read_log(previous)
        data = full
        tail = _one(self.query, "tailLines")
        if tail.isdigit():
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail):] if int(tail) else [])
        if not (_true(self.query, "follow") and running and not previous):
            self.send_bytes(200, data, "text/plain")
            return
        # kubectl logs -f: what there is, then what the process writes, until it ends.
        self._start(200, "text/plain")
        if data:
            self._chunk(data)
        sent = len(full)
        while running and worker.log_start == start and not self.app.stop.wait(0.2):
            full, running = worker.read_log()
            if len(full) > sent:
                self._chunk(full[sent:])
                sent = len(full)
            elif self._client_gone():
                raise _ClientGone()
        self.wfile.write(b"0\r\n\r\n")

    def _body_object(self, body, res=None):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype == "application/vnd.kubernetes.protobuf" and body:
            try:
                if res is NAMESPACES:
                    return decode_namespace(body)
                raise ProtobufError("not a Namespace")
            except ProtobufError as e:
                raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                               "types include: application/json (the emulator reads protobuf only for "
                               "Namespace; %s)" % e, "UnsupportedMediaType") from None
        if ctype not in ("application/json", "*/*", "text/plain") and body:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                           "types include: application/json", "UnsupportedMediaType")
        try:
            obj = json.loads(body or b"null")
        except ValueError as e:
            raise ApiError(400, "the body of the request was in an unknown format - accepted media "
                           "types include: application/json (%s)" % e) from None
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        return obj

    def _dry_run(self):
        return "All" in self.query.get("dryRun", [])

    def create(self, res, ns, body):
        obj = self._body_object(body, res)
        if obj.get("kind") not in (None, res.kind) or obj.get("apiVersion") not in (None, res.api_version):
            raise ApiError(400, "the API version in the data (%s) does not match the expected API "
                           "version (%s), or the kind (%s) is not %s"
                           % (obj.get("apiVersion"), res.api_version, obj.get("kind"), res.kind))
        if not res.namespaced:
            ns = None
        elif ns is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        entry = self.app.store.create(res, ns, obj, dry_run=self._dry_run())
        data, ctype = self._render_one(res, entry)
        self.send_bytes(201, data, ctype)

    def update(self, res, ns, name, sub, body):
        obj = self._body_object(body, res)
        store = self.app.store
        if sub == "scale":
            with store.cond:
                old = store.get(res, ns, name).obj
                want = obj.get("metadata", {}).get("resourceVersion")
                new = dict(old, spec=dict(old.get("spec") or {}, replicas=(obj.get("spec") or {}).get("replicas", 0)))
                if want:
                    new = dict(new, metadata=dict(new["metadata"], resourceVersion=want))
                entry = store.replace(res, ns, name, new, dry_run=self._dry_run())
            self.send_json(200, _scale_of(entry.obj))
            return
        entry = store.replace(res, ns, name, obj, subresource=sub, dry_run=self._dry_run())
        data, ctype = self._render_one(res, entry)
        self.send_bytes(200, data, ctype)

    def patch(self, res, ns, name, sub, body):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        funcs = {"application/merge-patch+json": merge_patch,
                 "application/strategic-merge-patch+json": strategic_merge_patch,
                 "application/json-patch+json": json_patch}
        if ctype not in funcs:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                           "types include: application/json-patch+json, application/merge-patch+json, "
                           "application/strategic-merge-patch+json (server-side apply, "
                           "application/apply-patch+yaml, is not emulated)", "UnsupportedMediaType")
        try:
            patch = json.loads(body or b"null")
        except ValueError as e:
            raise ApiError(400, "error decoding patch: %s" % e) from None
        if ctype != "application/json-patch+json" and not isinstance(patch, dict):
            raise ApiError(400, "patch must be a JSON object")
        store = self.app.store
        with store.cond:  # read-modify-write under the store lock: no lost update
            old = store.get(res, ns, name).obj
            try:
                if sub == "scale":
                    scale = funcs[ctype](_scale_of(old), patch)
                    new = dict(old, spec=dict(old.get("spec") or {},
                                              replicas=(scale.get("spec") or {}).get("replicas", 0)))
                    want = (scale.get("metadata") or {}).get("resourceVersion")
                    new["metadata"] = dict(old["metadata"], resourceVersion=want or old["metadata"]["resourceVersion"])
                else:
                    new = funcs[ctype](old, patch)
            except PatchError as e:
                raise ApiError(e.code, str(e)) from None
            if not isinstance(new, dict):
                raise ApiError(422, "the patch does not yield an object")
            entry = store.replace(res, ns, name, new, subresource=None if sub == "scale" else sub,
                                  dry_run=self._dry_run())
        if sub == "scale":
            self.send_json(200, _scale_of(entry.obj))
            return
        data, ctype = self._render_one(res, entry)
        self.send_bytes(200, data, ctype)

    def _delete_options(self, body):
        """(gracePeriodSeconds, preconditions, dry run) from DeleteOptions and the query."""
        ctype = (self.headers.get("Content-Type") or "").lower()
        # A protobuf DeleteOptions (typed clients) is not decoded: defaults apply.
        opts = self._body_object(body) if body.strip() and "protobuf" not in ctype else {}
        grace = opts.get("gracePeriodSeconds")
        if _one(self.query, "gracePeriodSeconds"):
            try:
                grace = int(_one(self.query, "gracePeriodSeconds"))
            except ValueError:
                raise ApiError(400, "invalid gracePeriodSeconds") from None
        return grace, opts.get("preconditions"), self._dry_run() or "All" in (opts.get("dryRun") or [])

    def delete(self, res, ns, name, body):
        grace, pre, dry_run = self._delete_options(body)
        obj = self.app.store.delete(res, ns, name, grace, pre, dry_run=dry_run)
        if res in (PODS, NAMESPACES):
            data, ctype = self._render_one(res, obj)
            self.send_bytes(200, data, ctype)
        else:
            details = dict(res.details(name), uid=obj["metadata"].get("uid"))
            self.send_json(200, status_body(200, None, "", details))

    def delete_collection(self, res, ns, body):
        match = self._selectors(res)
        grace, _, dry_run = self._delete_options(body)
        self._check_namespace(ns)
        _, entries = self.app.store.list(res, ns)
        gone = []
        for e in entries:
            if match(e.obj):
                meta = e.obj["metadata"]
                try:
                    gone.append(self.app.store.delete(res, meta.get("namespace"), meta["name"], grace,
                                                      dry_run=dry_run))
                except ApiError:
                    pass  # deleted meanwhile
        self.send_json(200, {"kind": res.list_kind, "apiVersion": res.api_version,
                             "metadata": {"resourceVersion": str(self.app.store.rv)}, "items": gone})

    def watch(self, res, ns):
        match = self._selectors(res)
        fmt, version = self.negotiate(table=True)
        self._check_namespace(ns)
        try:
            timeout = int(_one(self.query, "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise ApiError(400, "invalid timeoutSeconds") from None
        bookmarks = _true(self.query, "allowWatchBookmarks")
        initial = _true(self.query, "sendInitialEvents")
        store = self.app.store
        deadline = time.monotonic() + timeout
        ctype = "application/json"
        if fmt == "table":
            ctype = "application/json;as=Table;v=%s;g=meta.k8s.io" % version
        include = _one(self.query, "includeObject", "Metadata")

        def encode(type_, obj):
            if fmt == "table":
                meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                obj = to_table(res, [typed(res, obj)], meta, include, version)
            elif fmt == "partial":
                obj = partial_metadata(obj, version)
            else:
                obj = typed(res, obj)
            return b'{"type":"%s","object":%s}\n' % (type_.encode(), dumps(obj))

        def bookmark(rv, end=False):
            meta = {"resourceVersion": str(rv), "creationTimestamp": None}
            if end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return encode("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta})

        try:
            entries, pos = store.watch_start(res, ns, _one(self.query, "resourceVersion"), initial)
        except ApiError as e:
            if e.code != 410:
                raise
            self._start(200, ctype)
            self._chunk(b'{"type":"ERROR","object":%s}\n' % dumps(e.body()))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._start(200, ctype)
        last_send = time.monotonic()
        for e in entries:
            if match(e.obj):
                self._chunk(encode("ADDED", e.obj))
        if initial and bookmarks:
            self._chunk(bookmark(pos, end=True))
        while not self.app.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                events, pos = store.watch_next(res, ns, pos, min(WATCH_POLL, left))
            except ApiError as e:
                self._chunk(b'{"type":"ERROR","object":%s}\n' % dumps(e.body()))
                break
            sent = False
            for ev in events:
                now_in = ev.type != "DELETED" and match(ev.obj)
                was_in = ev.prev is not None and match(ev.prev)
                if ev.type == "ADDED" and now_in:
                    type_ = "ADDED"
                elif ev.type == "MODIFIED":
                    type_ = {(True, True): "MODIFIED", (True, False): "ADDED",
                             (False, True): "DELETED"}.get((now_in, was_in))
                elif ev.type == "DELETED" and was_in:
                    type_ = "DELETED"
                else:
                    type_ = None
                if type_:
                    self._chunk(encode(type_, ev.obj))
                    sent = True
            if sent:
                last_send = time.monotonic()
                continue
            if self._client_gone():
                raise _ClientGone()
            if bookmarks and time.monotonic() - last_send >= BOOKMARK_EVERY:
                self._chunk(bookmark(pos))
                last_send = time.monotonic()
        self.wfile.write(b"0\r\n\r\n")

    def _client_gone(self):
        """A watcher sends nothing; anything readable means it closed (or misbehaves)."""
        try:
            if self.connection.pending():
                return True
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable)
        except (OSError, ValueError):
            return True

    # -- the control API -----------------------------------------------------

    def control(self, method, path, body):
        auth = self.app.tokens.user(self.headers.get("Authorization"))
        if auth is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        self.user, allowed = auth
        if not allowed:
            raise ApiError(403, 'User "%s" cannot use the emulator control API (it needs the token '
                           'in DIR/token)' % self.user, "Forbidden")
        segs = [p for p in path.split("/") if p]
        parts = segs[2:]
        app = self.app
        if segs[:2] != ["emulator", "v1"]:
            raise ApiError(404, "unknown control path %s (see tests/emulator/README.md)" % path)
        if parts == ["faults"] and method == "GET":
            self.send_json(200, {"faults": app.faults.list()})
        elif parts == ["faults"] and method == "POST":
            self.send_json(201, app.faults.add(self._body_object(body)))
        elif parts == ["faults"] and method == "DELETE":
            self.send_json(200, {"cleared": app.faults.clear()})
        elif len(parts) == 2 and parts[0] == "faults" and method == "DELETE":
            try:
                n = app.faults.clear(int(parts[1]))
            except ValueError:
                n = 0
            if not n:
                raise ApiError(404, "no fault with id %s" % parts[1])
            self.send_json(200, {"cleared": n})
        elif parts == ["tokens", "rotate"] and method == "POST":
            opts = self._body_object(body) if body.strip() else {}
            self.send_json(200, rotate_token(app, bool(opts.get("grace", False))))
        elif parts == ["pods"] and method == "PUT":
            doc = json.loads(body or b"null") if body.strip() else None
            items = doc if isinstance(doc, list) else (doc or {}).get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ApiError(400, "PUT /emulator/v1/pods takes a PodList (or a JSON list of pods)")
            rv = app.store.replace_all(PODS, items, app.namespace)
            self.send_json(200, {"resourceVersion": str(rv), "count": len(items)})
        elif parts == ["requests"] and method == "GET":
            self.send_json(200, app.stats.snapshot())
        elif parts == ["requests"] and method == "DELETE":
            app.stats.reset()
            self.send_json(200, {"reset": True})
        elif parts == ["state"] and method == "GET":
            with app.store.cond:
                counts = {r.qualified: len(t) for r, t in app.store.data.items()}
                rv = app.store.rv
            self.send_json(200, {"resourceVersion": str(rv), "counts": counts, "port": app.port,
                                 "host": app.host, "namespace": app.namespace})
        else:
            raise ApiError(404, "unknown control request %s %s (see tests/emulator/README.md)" % (method, path))


def rotate_token(app, grace):
    """New token in DIR/token (and the kubeconfig); the old one stops working unless grace."""
    new = make_token(app.namespace, "ukko")
    app.tokens.rotate(new, grace)
    path = os.path.join(app.state_dir, "token")
    write_atomic(path, new, 0o600)
    write_kubeconfig(os.path.join(app.state_dir, "kubeconfig"), server_url(app.host, app.port),
                     os.path.join(app.state_dir, "ca.crt"), new, app.namespace)
    log("token rotated (grace=%s); new token in %s" % (grace, path))
    return {"rotated": True, "grace": grace, "token_path": path}
