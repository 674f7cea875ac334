"""The emulator's object store: one resourceVersion counter, objects, and watch events.

Request threads, deletion timers and the control API all go through Store, under
its one condition lock. Objects are never changed once stored: an update stores
a new dict (sharing untouched parts), so callers may read and serialise what
they got after the lock is released. Each stored object keeps its compact JSON
bytes, serialised once, which is what list and get responses are made of.
"""

import bisect
import copy
import ipaddress
import json
import threading

from emulator_resources import (NAMESPACES, PODS, ApiError, generate_name, check_name,
                                new_uid, now_rfc3339)

__all__ = ["Store", "Entry", "dumps", "typed", "typed_raw"]

# Watch events kept for watchers that resume from a resourceVersion; older
# ones are compacted away (a watch from before them gets 410 Expired).
EVENT_LOG_MAX = 50000


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Entry:
    __slots__ = ("obj", "raw")

    def __init__(self, obj):
        self.obj = obj
        self.raw = dumps(obj)


class Event:
    __slots__ = ("rv", "res", "ns", "type", "obj", "prev")

    def __init__(self, rv, res, ns, type_, obj, prev):
        self.rv, self.res, self.ns, self.type, self.obj, self.prev = rv, res, ns, type_, obj, prev


class _Ctx:
    """What a resource's on_create hook may use."""

    def __init__(self, store):
        self.store = store
        self.node_name = store.node_name
        self.host_ip = store.host_ip

    def allocate_ip(self):
        return self.store._allocate_ip()


def _rv_int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


class Store:
    def __init__(self, pod_cidr="10.244.0.0/16", node_name="emulator-node", host_ip="10.0.0.10",
                 termination_delay=0.0):
        self.cond = threading.Condition(threading.RLock())
        self.rv = 1
        self.data = {}  # ResourceType -> {(ns, name): Entry}; dicts keep insertion order
        self.events = []
        self.compacted_rv = 1  # no event at or below this is kept
        self.closed = False
        self.node_name = node_name
        self.host_ip = host_ip
        self.termination_delay = termination_delay
        self._net = ipaddress.ip_network(pod_cidr)
        self._next_ip = 2
        self._timers = {}  # uid -> Timer of a pod that is terminating
        # The controller's kubelet (emulator_kubelet.Kubelet) when --controller
        # runs: a pod it runs is not removed by a graceful delete, only marked;
        # the kubelet stops the process and then calls finish_pod_deletion.
        self.kubelet = None

    # -- loading (before serving; no events) --------------------------------

    def load(self, res, obj, default_ns=None, rv=None):
        """Store obj as given (byte-faithful); fill only namespace and resourceVersion."""
        with self.cond:
            meta = obj.setdefault("metadata", {})
            if res.namespaced:
                ns = meta.get("namespace") or default_ns
                meta.setdefault("namespace", ns)
                self.ensure_namespace(ns, emit=False)
            else:
                ns = ""
            if "resourceVersion" not in meta:
                self.rv += 1
                meta["resourceVersion"] = str(self.rv)
            self.rv = max(self.rv, _rv_int(meta["resourceVersion"]), rv or 0)
            self.compacted_rv = self.rv
            self.data.setdefault(res, {})[(ns, meta["name"])] = Entry(obj)

    def ensure_namespace(self, name, emit=True):
        with self.cond:
            table = self.data.setdefault(NAMESPACES, {})
            if ("", name) in table:
                return
            self.rv += 1
            ns = {"metadata": {"name": name, "uid": new_uid(), "resourceVersion": str(self.rv),
                               "creationTimestamp": now_rfc3339(),
                               "labels": {"kubernetes.io/metadata.name": name}},
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            table[("", name)] = Entry(ns)
            if emit:
                self._emit(NAMESPACES, "", "ADDED", ns, None)
            else:
                self.compacted_rv = self.rv

    def namespace_exists(self, name):
        with self.cond:
            return ("", name) in self.data.get(NAMESPACES, {})

    # -- reads ---------------------------------------------------------------

    def list(self, res, ns=None):
        """(resourceVersion, [Entry]) for one namespace, or all when ns is None."""
        with self.cond:
            table = self.data.get(res, {})
            if ns is None or not res.namespaced:
                entries = list(table.values())
            else:
                entries = [e for (n, _), e in table.items() if n == ns]
            return self.rv, entries

    def get(self, res, ns, name):
        with self.cond:
            entry = self.data.get(res, {}).get((ns if res.namespaced else "", name))
        if entry is None:
            raise res.not_found(name)
        return entry

    # -- writes --------------------------------------------------------------

    def _bump(self, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _emit(self, res, ns, type_, obj, prev):
        ev = Event(self.rv, res, ns, type_, obj, prev)
        self.events.append(ev)
        if len(self.events) > EVENT_LOG_MAX:
            drop = len(self.events) // 2
            self.compacted_rv = self.events[drop - 1].rv
            del self.events[:drop]
        self.cond.notify_all()

    def _check_ns(self, res, ns):
        if res.namespaced and not self.namespace_exists(ns):
            raise NAMESPACES.not_found(ns)

    def create(self, res, ns, obj, dry_run=False):
        with self.cond:
            self._check_ns(res, ns)
            meta = obj.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise ApiError(400, "metadata must be an object")
            if res.namespaced:
                if meta.get("namespace") and meta["namespace"] != ns:
                    raise ApiError(400, "the namespace of the provided object does not match "
                                   "the namespace sent on the request")
                meta["namespace"] = ns
            else:
                ns = ""
                meta.pop("namespace", None)
            table = self.data.setdefault(res, {})
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(10):
                    meta["name"] = generate_name(meta["generateName"])
                    if (ns, meta["name"]) not in table:
                        break
            check_name(res.kind, meta.get("name"))
            if (ns, meta["name"]) in table:
                raise ApiError(409, '%s "%s" already exists' % (res.qualified, meta["name"]),
                               "AlreadyExists", res.details(meta["name"]))
            obj = _untyped(obj)
            meta = obj["metadata"]
            for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(key, None)
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = now_rfc3339()
            if res.on_create:
                res.on_create(obj, _Ctx(self))
            if dry_run:
                return Entry(obj)
            self._bump(obj)
            entry = Entry(obj)
            table[(ns, meta["name"])] = entry
            self._emit(res, ns, "ADDED", obj, None)
            return entry

    def replace(self, res, ns, name, new, subresource=None, dry_run=False, precondition=True):
        """Store new as the object (PUT, or the result of a PATCH)."""
        with self.cond:
            ns = ns if res.namespaced else ""
            old = self.get(res, ns, name).obj
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                raise ApiError(400, "metadata must be an object")
            if meta.get("name", name) != name:
                raise ApiError(400, "the name of the object (%s) does not match the name on the "
                               "URL (%s)" % (meta.get("name"), name))
            if res.namespaced and meta.get("namespace", ns) != ns:
                raise ApiError(400, "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            want_rv = meta.get("resourceVersion")
            if precondition and want_rv and want_rv != old["metadata"].get("resourceVersion"):
                raise ApiError(409, 'Operation cannot be fulfilled on %s "%s": the object has been '
                               "modified; please apply your changes to the latest version and try "
                               "again" % (res.qualified, name), "Conflict", res.details(name))
            new = _untyped(new)
            new["metadata"] = meta = dict(meta)
            for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if subresource == "status":
                # Only status (and metadata) change through the status subresource.
                new = dict(old, status=new.get("status"), metadata=meta)
                if new["status"] is None:
                    del new["status"]
            elif res.on_update:
                res.on_update(new, old)
            meta["resourceVersion"] = old["metadata"].get("resourceVersion")
            if new == old or dry_run:
                return Entry(new) if dry_run else self.data[res][(ns, name)]
            self._bump(new)
            entry = Entry(new)
            self.data[res][(ns, name)] = entry
            self._emit(res, ns, "MODIFIED", new, old)
            return entry

    def delete(self, res, ns, name, grace=None, preconditions=None, dry_run=False):
        """Delete one object; returns the object as the response shows it.

        A pod deleted with a grace period while --termination-delay-ms is set
        stays, with a deletionTimestamp, for that delay (as a kubelet would keep
        it while its containers stop); a pod the controller's kubelet runs stays
        until its process has stopped; otherwise it is gone at once.
        """
        with self.cond:
            ns = ns if res.namespaced else ""
            old = self.get(res, ns, name).obj
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
                raise ApiError(409, "Precondition failed: UID in precondition: %s, UID in object "
                               "meta: %s" % (pre["uid"], old["metadata"].get("uid")), "Conflict",
                               res.details(name))
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"].get("resourceVersion"):
                raise ApiError(409, "Precondition failed: ResourceVersion in precondition: %s, "
                               "ResourceVersion in object meta: %s"
                               % (pre["resourceVersion"], old["metadata"].get("resourceVersion")),
                               "Conflict", res.details(name))
            if res is PODS and grace is None:
                grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            obj = copy.deepcopy(old)
            meta = obj["metadata"]
            if res is PODS or res is NAMESPACES:
                meta.setdefault("deletionTimestamp", now_rfc3339(grace or 0))
                meta.setdefault("deletionGracePeriodSeconds", grace or 0)
            if res is NAMESPACES:
                obj.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return obj
            uid = meta.get("uid")
            if grace and uid in self._timers:
                return old  # already terminating; its timer will remove it
            kubelet = self.kubelet
            if res is PODS and grace and kubelet is not None and kubelet.runs(uid):
                if "deletionTimestamp" in old["metadata"]:
                    return old  # already terminating: the kubelet is stopping it
                self._bump(obj)
                self.data[res][(ns, name)] = Entry(obj)
                self._emit(res, ns, "MODIFIED", obj, old)
                return obj
            if (res is PODS and grace and self.termination_delay > 0
                    and "deletionTimestamp" not in old["metadata"]):
                self._bump(obj)
                self.data[res][(ns, name)] = Entry(obj)
                self._emit(res, ns, "MODIFIED", obj, old)
                timer = threading.Timer(self.termination_delay, self._finish_delete,
                                        (res, ns, name, uid))
                timer.daemon = True
                self._timers[uid] = timer
                timer.start()
                return obj
            self._remove(res, ns, name, obj)
            if res is NAMESPACES:
                for other, table in self.data.items():
                    if other.namespaced:
                        for (n, nm) in [k for k in table if k[0] == name]:
                            self._remove(other, n, nm, table[(n, nm)].obj)
            return obj

    def _remove(self, res, ns, name, obj):
        obj = dict(obj, metadata=dict(obj["metadata"]))
        timer = self._timers.pop(obj["metadata"].get("uid"), None)
        if timer is not None:
            timer.cancel()
        del self.data[res][(ns, name)]
        self._bump(obj)
        self._emit(res, ns, "DELETED", obj, obj)

    def finish_pod_deletion(self, ns, name, uid):
        """The kubelet's last step: the pod's process has stopped, the object goes."""
        self._finish_delete(PODS, ns, name, uid)

    def _finish_delete(self, res, ns, name, uid):
        with self.cond:
            self._timers.pop(uid, None)
            entry = self.data.get(res, {}).get((ns, name))
            if self.closed or entry is None or entry.obj["metadata"].get("uid") != uid:
                return
            self._remove(res, ns, name, entry.obj)

    def replace_all(self, res, objs, default_ns):
        """The control API's PUT: make objs the whole set of res, with events."""
        with self.cond:
            table = self.data.setdefault(res, {})
            wanted = {}
            for obj in objs:
                meta = obj.setdefault("metadata", {})
                ns = (meta.get("namespace") or default_ns) if res.namespaced else ""
                if res.namespaced:
                    meta["namespace"] = ns
                    self.ensure_namespace(ns)
                if not meta.get("name"):
                    raise ApiError(400, "every item needs metadata.name")
                wanted[(ns, meta["name"])] = obj
            for key in [k for k in table if k not in wanted]:
                self._remove(res, key[0], key[1], table[key].obj)
            for key, obj in wanted.items():
                old = table.get(key)
                if old is not None:
                    cmp = dict(obj, metadata=dict(obj["metadata"]))
                    cmp["metadata"]["resourceVersion"] = old.obj["metadata"].get("resourceVersion")
                    if cmp == old.obj:
                        continue
                obj["metadata"].setdefault("uid", old.obj["metadata"].get("uid") if old else new_uid())
                obj["metadata"].setdefault("creationTimestamp", now_rfc3339())
                self._bump(obj)
                table[key] = Entry(obj)
                self._emit(res, key[0], "MODIFIED" if old else "ADDED", obj, old.obj if old else None)
            return self.rv

    def _allocate_ip(self):
        used = set()
        for entry in self.data.get(PODS, {}).values():
            ip = (entry.obj.get("status") or {}).get("podIP")
            if ip:
                used.add(ip)
        size = self._net.num_addresses
        for _ in range(size):
            n = self._next_ip
            self._next_ip = n + 1 if n + 2 < size else 2
            ip = str(self._net[n])
            if not ip.endswith(".0") and not ip.endswith(".255") and ip not in used:
                return ip
        raise ApiError(500, "Internal error occurred: the pod CIDR %s is full" % self._net, "InternalError")

    # -- watch ---------------------------------------------------------------

    def watch_start(self, res, ns, rv_param, initial):
        """Where a watch begins: (initial entries, position).

        rv_param "" or "0" (or initial=True) sends the current objects first, as
        ADDED; a resourceVersion resumes after it, or is 410 if compacted away.
        """
        with self.cond:
            if rv_param in (None, "", "0") or initial:
                _, entries = self.list(res, ns)
                return entries, self.rv
            try:
                pos = int(rv_param)
            except ValueError:
                raise ApiError(400, 'invalid resource version "%s"' % rv_param) from None
            if pos < self.compacted_rv:
                raise ApiError(410, "too old resource version: %d (%d)" % (pos, self.compacted_rv),
                               "Expired")
            return [], pos

    def watch_next(self, res, ns, pos, timeout):
        """Events of res (in ns, or all) after pos, waiting up to timeout for one.

        Returns (events, new position): every event up to the new position has
        been looked at, so a BOOKMARK may carry it.
        """
        with self.cond:
            if pos < self.compacted_rv:
                raise ApiError(410, "too old resource version: %d (%d)" % (pos, self.compacted_rv),
                               "Expired")
            found = self._events_after(res, ns, pos)
            if not found and not self.closed:
                self.cond.wait(timeout)
                found = self._events_after(res, ns, pos)
            return found, self.rv

    def _events_after(self, res, ns, pos):
        start = bisect.bisect_right(self.events, pos, key=lambda e: e.rv)
        return [e for e in self.events[start:]
                if e.res is res and (ns is None or not res.namespaced or e.ns == ns)]

    def close(self):
        with self.cond:
            self.closed = True
            for t in self._timers.values():
                t.cancel()
            self.cond.notify_all()


def _untyped(obj):
    """Stored objects are list items, which a Go server writes without kind and
    apiVersion; typed() puts them back for single-object responses and events."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def typed(res, obj):
    if "kind" in obj:
        return obj
    out = {"kind": res.kind, "apiVersion": res.api_version}
    out.update(obj)
    return out


def typed_raw(res, entry):
    """The JSON bytes of typed(res, entry.obj), without serialising again."""
    if "kind" in entry.obj or not entry.raw.startswith(b"{") or entry.raw == b"{}":
        return entry.raw if "kind" in entry.obj else dumps(typed(res, entry.obj))
    return b'{"kind":%s,"apiVersion":%s,' % (dumps(res.kind), dumps(res.api_version)) + entry.raw[1:]
