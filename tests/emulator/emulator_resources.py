"""The kinds the emulator serves: their names, defaults, field labels and tables.

Pure data and pure functions, used from request threads under no lock. Errors
are ApiError, which carries the Status body a real API server would send for
the same mistake (same reason, code and message shape).
"""

import datetime
import json
import random
import re
import time
import uuid

__all__ = ["ApiError", "ResourceType", "RESOURCES", "by_path", "status_body",
           "now_rfc3339", "parse_rfc3339", "new_uid", "human_duration", "to_table",
           "pod_template", "partial_metadata"]


def now_rfc3339(offset_seconds=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def new_uid():
    return str(uuid.uuid4())


# -- Status ---------------------------------------------------------------

_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


class ApiError(Exception):
    """An error that becomes a meta/v1 Status response."""

    def __init__(self, code, message, reason=None, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown" if code >= 400 else "")
        self.details = details
        self.headers = headers or {}

    def body(self):
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code, message, reason=None, details=None):
    """Status JSON with the field order a Go API server writes."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Success" if code < 400 else "Failure"}
    if message:
        status["message"] = message
    reason = reason if reason is not None else _REASONS.get(code, "")
    if reason:
        status["reason"] = reason
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


def fault_status(code, message=None):
    """The Status body a real server sends for a given 4xx/5xx code."""
    if code == 500:
        msg = message or "Internal error occurred: injected by the emulator"
        return status_body(500, msg, "InternalError", {"causes": [{"message": msg}]})
    if code == 503:
        return status_body(503, message or "the server is currently unable to handle the request",
                           "ServiceUnavailable")
    if code == 504:
        return status_body(504, message or "The list operation against pods could not be completed at this time, please try again.",
                           "Timeout", {"retryAfterSeconds": 1})
    if code == 429:
        return status_body(429, message or "Too many requests, please try again later.",
                           "TooManyRequests", {"retryAfterSeconds": 1})
    if code == 401:
        return status_body(401, "Unauthorized", "Unauthorized")
    if code == 410:
        return status_body(410, message or "The provided continue parameter is too old", "Expired")
    return status_body(code, message or "emulator fault %d" % code)


# -- field access ---------------------------------------------------------

def _dig(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _field(path, default=""):
    def get(obj):
        value = _dig(obj, path)
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return get


def _pod_ip(obj):
    ips = _dig(obj, "status.podIPs") or []
    if ips and isinstance(ips[0], dict) and ips[0].get("ip"):
        return ips[0]["ip"]
    return _dig(obj, "status.podIP") or ""


_META_FIELDS = {"metadata.name": _field("metadata.name"),
                "metadata.namespace": _field("metadata.namespace")}
_POD_FIELDS = dict(_META_FIELDS, **{
    "spec.nodeName": _field("spec.nodeName"),
    "spec.restartPolicy": _field("spec.restartPolicy"),
    "spec.schedulerName": _field("spec.schedulerName"),
    "spec.serviceAccountName": _field("spec.serviceAccountName"),
    "spec.hostNetwork": _field("spec.hostNetwork", "false"),
    "status.phase": _field("status.phase"),
    "status.podIP": _pod_ip,
    "status.hostIP": _field("status.hostIP"),
    "status.nominatedNodeName": _field("status.nominatedNodeName"),
})
_NAMESPACE_FIELDS = {"metadata.name": _field("metadata.name"),
                     "status.phase": _field("status.phase")}
_EVENT_FIELDS = dict(_META_FIELDS, **{
    "involvedObject.%s" % f: _field("involvedObject.%s" % f)
    for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
}, **{f: _field(f) for f in ("reason", "reportingComponent", "source", "type")})


# -- human-readable columns ------------------------------------------------

def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm" % minutes if s % 60 == 0 else "%dm%ds" % (minutes, s % 60)
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh" % hours if minutes % 60 == 0 else "%dh%dm" % (hours, minutes % 60)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd" % (hours // 24) if hours % 24 == 0 else "%dd%dh" % (hours // 24, hours % 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if days == 0 else "%dy%dd" % (hours // 24 // 365, days)
    return "%dy" % (hours // 24 // 365)


def _age(obj):
    created = parse_rfc3339(_dig(obj, "metadata.creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_duration(time.time() - created)


def _col(name, description, priority=0, fmt="", typ="string"):
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


_NAME_COL = _col("Name", "Name must be unique within a namespace. Is required when creating resources, "
                 "although some resources may allow a client to request the generation of an "
                 "appropriate name automatically.", fmt="name")
_AGE_COL = _col("Age", "CreationTimestamp is a timestamp representing the server time when this "
                "object was created.")

_POD_COLUMNS = [
    _NAME_COL,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and "
         "when the last container in this pod has restarted."),
    _AGE_COL,
    _col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if "
         "not yet allocated.", 1),
    _col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
    _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on "
         "the node, but it cannot be scheduled right away as preemption victims receive their "
         "graceful termination periods.", 1),
    _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod "
         "readiness.", 1),
]


def _pod_row(pod):
    """printPod from pkg/printers/internalversion, for the common cases."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    restarts, ready, last_restart = 0, 0, None
    total = len(spec.get("containers") or [])
    conditions = None
    if phase == "Succeeded":
        conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                       "message": "The pod has completed successfully."}]
    elif phase == "Failed":
        conditions = [{"type": "Completed", "status": "True", "reason": "Failed",
                       "message": "The pod failed."}]
    initializing = False
    init_specs = spec.get("initContainers") or []
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode", 0) == 0:
            continue
        if term is not None:
            reason = "Init:" + (term.get("reason") or "ExitCode:%d" % term.get("exitCode", 0))
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = "Init:%d/%d" % (i, len(init_specs))
        initializing = True
        break
    if not initializing:
        restarts = 0
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            finished = parse_rfc3339(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
            if finished is not None and (last_restart is None or finished > last_restart):
                last_restart = finished
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = ("Signal:%d" % term["signal"]) if term.get("signal") else \
                    "ExitCode:%d" % term.get("exitCode", 0)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in status.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    if gates:
        true_conds = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_cell = "%d/%d" % (sum(1 for g in gates if g.get("conditionType") in true_conds), len(gates))
    else:
        gates_cell = "<none>"
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = "%d (%s ago)" % (restarts, human_duration(time.time() - last_restart))
    cells = [meta.get("name", ""), "%d/%d" % (ready, total), reason, restarts_cell, _age(pod),
             _pod_ip(pod) or "<none>", spec.get("nodeName") or "<none>",
             status.get("nominatedNodeName") or "<none>", gates_cell]
    return cells, conditions


_NAMESPACE_COLUMNS = [_NAME_COL, _col("Status", "The status of the namespace"), _AGE_COL]


def _namespace_row(ns):
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", ""), _age(ns)], None


_STS_COLUMNS = [
    _NAME_COL,
    _col("Ready", "Number of the pod with ready state"),
    _AGE_COL,
    _col("Containers", "Names of each container in the template.", 1),
    _col("Images", "Images referenced by each container in the template.", 1),
]


def _sts_row(sts):
    spec = sts.get("spec") or {}
    status = sts.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [sts["metadata"]["name"],
            "%d/%d" % (status.get("readyReplicas", 0), spec.get("replicas", 0)),
            _age(sts),
            ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers)], None


_EVENT_COLUMNS = [
    _col("Last Seen", "Time when last this event was seen."),
    _col("Type", "Type of this event (Normal, Warning)."),
    _col("Reason", "Short, machine understandable string that gives the reason for the transition."),
    _col("Object", "The object that this event is about."),
    _col("Message", "A human-readable description of the status of this operation."),
]


def _event_row(ev):
    inv = ev.get("involvedObject") or {}
    return ["<unknown>", ev.get("type", ""), ev.get("reason", ""),
            "%s/%s" % ((inv.get("kind") or "").lower(), inv.get("name", "")),
            ev.get("message", "")], None


def partial_metadata(obj, version="v1"):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/" + version,
            "metadata": obj.get("metadata") or {}}


def to_table(res, objs, list_meta, include_object="Metadata", version="v1"):
    """A meta.k8s.io Table, as the server-side printers build it (Wide: true)."""
    rows = []
    for obj in objs:
        cells, conditions = res.row(obj)
        row = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj, version)
        rows.append(row)
    table = {"kind": "Table", "apiVersion": "meta.k8s.io/" + version, "metadata": list_meta}
    if res.columns is not None:
        table["columnDefinitions"] = res.columns
    table["rows"] = rows
    return table


# -- object preparation ----------------------------------------------------

_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(prefix):
    return prefix + "".join(random.choice(_NAME_SUFFIX_CHARS) for _ in range(5))


def invalid(kind, name, field, reason, message):
    detail = "%s: %s" % (field, message)
    return ApiError(422, '%s "%s" is invalid: %s' % (kind, name, detail), "Invalid",
                    {"name": name, "kind": kind,
                     "causes": [{"reason": reason, "message": message, "field": field}]})


def check_name(kind, name, label=False):
    if not name:
        raise invalid(kind, name, "metadata.name", "FieldValueRequired",
                      "Required value: name or generateName is required")
    regex, what = (_DNS_LABEL_RE, "RFC 1123 label") if label else (_DNS_SUBDOMAIN_RE, "RFC 1123 subdomain")
    if len(name) > (63 if label else 253) or not regex.match(name):
        raise invalid(kind, name, "metadata.name", "FieldValueInvalid",
                      'Invalid value: "%s": a lowercase %s must consist of lower case '
                      "alphanumeric characters, '-' or '.', and must start and end with an "
                      "alphanumeric character" % (name, what))


def _container_defaults(c):
    image = c.get("image", "")
    c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent")
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")


def _pod_create(pod, ctx):
    """Defaults a pod created through the API; ctx gives the pod IP allocator."""
    spec = pod.setdefault("spec", {})
    name = pod["metadata"]["name"]
    containers = spec.get("containers")
    if not containers:
        raise invalid("Pod", name, "spec.containers", "FieldValueRequired", "Required value")
    for i, c in enumerate(containers):
        if not c.get("name"):
            raise invalid("Pod", name, "spec.containers[%d].name" % i, "FieldValueRequired", "Required value")
        if not c.get("image"):
            raise invalid("Pod", name, "spec.containers[%d].image" % i, "FieldValueRequired", "Required value")
        _container_defaults(c)
    for c in spec.get("initContainers") or []:
        _container_defaults(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("nodeName", ctx.node_name)
    spec.setdefault("tolerations", [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}])
    given = pod.get("status")
    if isinstance(given, dict) and given:
        # A test asked for this status (Pending, Failed ...): keep it, fill the phase.
        given.setdefault("phase", "Running")
        if given["phase"] == "Running" and not given.get("podIP"):
            ip = ctx.allocate_ip()
            given["podIP"] = ip
            given.setdefault("podIPs", [{"ip": ip}])
        return
    ip = ctx.allocate_ip()
    pod["status"] = running_status(pod, ip, ctx.host_ip, pod["metadata"]["creationTimestamp"])


def running_status(pod, ip, host_ip, started):
    containers = (pod.get("spec") or {}).get("containers") or []
    conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                            "PodScheduled")]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": [{
            "name": c.get("name", ""),
            "state": {"running": {"startedAt": started}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": c.get("image", ""),
            "imageID": "",
            "containerID": "containerd://" + uuid.uuid5(uuid.NAMESPACE_OID, pod["metadata"].get("uid", "") + c.get("name", "")).hex * 2,
            "started": True,
        } for c in containers],
        "qosClass": "BestEffort",
    }


def pod_template(name, namespace, ip, labels, port_name="management", port=8558,
                 node_name="emulator-node", host_ip="10.0.0.10", created=None):
    """A Running pod as a kubelet would have reported it (for --generate-pods)."""
    created = created or now_rfc3339()
    pod = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": new_uid(),
            "creationTimestamp": created,
            "labels": dict(labels),
        },
        "spec": {
            "containers": [{
                "name": "ukko",
                "image": "ukko:dev",
                "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "ukko",
            "serviceAccount": "ukko",
            "nodeName": node_name,
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }
    pod["status"] = running_status(pod, ip, host_ip, created)
    return pod


def _pod_update(new, old):
    # The main resource cannot change status (that is the status subresource).
    if old is not None and "status" in old:
        new["status"] = old["status"]


def _namespace_create(ns, ctx):
    check_name("Namespace", ns["metadata"]["name"], label=True)
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]
    ns.setdefault("spec", {"finalizers": ["kubernetes"]})
    ns["status"] = {"phase": "Active"}


def _sts_create(sts, ctx):
    name = sts["metadata"]["name"]
    spec = sts.setdefault("spec", {})
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        raise invalid("StatefulSet", name, "spec.selector", "FieldValueRequired", "Required value")
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if tmpl_labels.get(k) != v:
            raise invalid("StatefulSet", name, "spec.template.metadata.labels", "FieldValueInvalid",
                          "Invalid value: %s: `selector` does not match template `labels`"
                          % json.dumps(tmpl_labels, separators=(",", ":")))
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    spec.setdefault("persistentVolumeClaimRetentionPolicy",
                    {"whenDeleted": "Retain", "whenScaled": "Retain"})
    for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        _container_defaults(c)
    sts["metadata"]["generation"] = 1
    # No controller runs here: nothing has been created for this set yet.
    sts["status"] = {"replicas": 0, "availableReplicas": 0}


def _sts_update(new, old):
    if old is None:
        return
    if "status" in old:
        new["status"] = old["status"]
    gen = old["metadata"].get("generation", 1)
    new["metadata"]["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen


def statefulset_template(name, namespace, replicas, port=8558):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            # As k8s/base: pods start together (formation waits for the expected
            # contact points, not for the one before to be ready).
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{
                    "name": "ukko", "image": "ukko:dev",
                    "ports": [{"name": "management", "containerPort": port}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "management"},
                                       "periodSeconds": 2}}],
                    "terminationGracePeriodSeconds": 30},
            },
        },
    }


# -- the resource table ----------------------------------------------------

class ResourceType:
    def __init__(self, group, plural, singular, kind, namespaced, *, short_names=(),
                 categories=(), subresources=(), fields=None, columns=None, row=None,
                 on_create=None, on_update=None, storage_hash="", version="v1"):
        self.group = group
        self.version = version
        self.plural = plural
        self.singular = singular
        self.kind = kind
        self.list_kind = kind + "List"
        self.namespaced = namespaced
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.subresources = dict(subresources)  # name -> (kind, group, version, verbs)
        self.fields = fields or dict(_META_FIELDS)
        self.columns = columns
        self._row = row
        self.on_create = on_create
        self.on_update = on_update
        self.storage_hash = storage_hash
        self.verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def qualified(self):
        """What error messages call it: "pods", "statefulsets.apps"."""
        return self.plural + "." + self.group if self.group else self.plural

    def details(self, name=None):
        d = {}
        if name:
            d["name"] = name
        if self.group:
            d["group"] = self.group
        d["kind"] = self.plural
        return d

    def row(self, obj):
        if self._row is None:
            created = _dig(obj, "metadata.creationTimestamp") or ""
            return [_dig(obj, "metadata.name") or "", created], None
        return self._row(obj)

    def not_found(self, name):
        return ApiError(404, '%s "%s" not found' % (self.qualified, name), "NotFound", self.details(name))


_GENERIC_COLUMNS = [_NAME_COL, _col("Created At", "CreationTimestamp is a timestamp representing "
                                    "the server time when this object was created.", fmt="date")]

PODS = ResourceType("", "pods", "pod", "Pod", True, short_names=["po"], categories=["all"],
                    subresources={"log": ("Pod", "", "v1", ["get"]),
                                  "status": ("Pod", "", "v1", ["get", "patch", "update"])},
                    fields=_POD_FIELDS, columns=_POD_COLUMNS, row=_pod_row,
                    on_create=_pod_create, on_update=_pod_update, storage_hash="xPOwRZ+Yhw8=")
NAMESPACES = ResourceType("", "namespaces", "namespace", "Namespace", False, short_names=["ns"],
                          subresources={"status": ("Namespace", "", "v1", ["get", "patch", "update"])},
                          fields=_NAMESPACE_FIELDS, columns=_NAMESPACE_COLUMNS, row=_namespace_row,
                          on_create=_namespace_create, storage_hash="Q3oi5N2YM8M=")
EVENTS = ResourceType("", "events", "event", "Event", True, short_names=["ev"],
                      fields=_EVENT_FIELDS, columns=_EVENT_COLUMNS, row=_event_row,
                      storage_hash="r2yiGXH7wu8=")
STATEFULSETS = ResourceType("apps", "statefulsets", "statefulset", "StatefulSet", True,
                            short_names=["sts"], categories=["all"],
                            subresources={"status": ("StatefulSet", "apps", "v1", ["get", "patch", "update"]),
                                          "scale": ("Scale", "autoscaling", "v1", ["get", "patch", "update"])},
                            columns=_STS_COLUMNS, row=_sts_row, on_create=_sts_create,
                            on_update=_sts_update, storage_hash="dmkayKMPdI8=")

RESOURCES = [NAMESPACES, PODS, EVENTS, STATEFULSETS]
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


def by_path(group, version, plural):
    return _BY_PATH.get((group, version, plural))


def group_versions():
    """{group: [versions]} for the named groups (not the core group)."""
    out = {}
    for r in RESOURCES:
        if r.group and r.version not in out.setdefault(r.group, []):
            out[r.group].append(r.version)
    return out
