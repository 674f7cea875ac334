"""The emulator's StatefulSet controller: keeps spec.replicas pods NAME-0..N-1 of
every StatefulSet, hands them to the kubelet (emulator_kubelet) to run, removes
the highest ordinals first on scale-down, replaces pods of an older template one
by one from the highest ordinal (RollingUpdate), and reports the set's status.

One thread. It wakes on every change of the Store (and once a second), reads
the StatefulSets and pods, and acts through the Store, as the real controller
acts through the API: pods it creates are ADDED, pods it deletes get a
deletionTimestamp first (MODIFIED) and go (DELETED) once the kubelet stopped
their process. It only ever touches the pods it made itself.
"""

import copy
import hashlib
import json
import re
import threading
import traceback

from emulator_handler import log as _log
from emulator_resources import PODS, STATEFULSETS, ApiError

__all__ = ["StatefulSetController"]

RESYNC = 1.0  # seconds: reconcile at least this often, changes or not


def log(msg):
    _log("statefulset-controller: " + msg)


def _ready(pod):
    if (pod.get("status") or {}).get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _pod_revision(pod):
    return ((pod.get("metadata") or {}).get("labels") or {}).get("controller-revision-hash")


def _revision(sts):
    tmpl = json.dumps((sts.get("spec") or {}).get("template") or {}, sort_keys=True).encode()
    return "%s-%s" % (sts["metadata"]["name"], hashlib.sha1(tmpl).hexdigest()[:10])


class StatefulSetController:
    def __init__(self, store, kubelet):
        self.store = store
        self.kubelet = kubelet
        self.made = set()         # uids of the pods this controller created
        self.complained = set()   # (ns, pod name) already logged as in the way
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="statefulset-controller", daemon=True)

    def start(self):
        self.store.kubelet = self.kubelet
        self.thread.start()

    def stop(self):
        """Stop reconciling, then stop every pod (see Kubelet.shutdown)."""
        self.stop_event.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self.thread.join(10)
        self.kubelet.shutdown()

    def _loop(self):
        seen = None
        while not self.stop_event.is_set():
            with self.store.cond:
                if self.store.rv == seen and not self.store.closed:
                    self.store.cond.wait(RESYNC)
                seen = self.store.rv
            if self.stop_event.is_set():
                break
            try:
                self.reconcile()
            except Exception:
                log("unexpected error:\n%s" % traceback.format_exc())
                self.stop_event.wait(RESYNC)

    # -- one pass ------------------------------------------------------------

    def reconcile(self):
        _, sets = self.store.list(STATEFULSETS)
        _, pods = self.store.list(PODS)
        owned = {}  # StatefulSet uid -> {ordinal: pod}
        for e in pods:
            pod = e.obj
            meta = pod["metadata"]
            if meta.get("uid") not in self.made:
                continue
            ref = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
            m = re.match(r"^(.*)-(\d+)$", meta["name"])
            if ref is None or m is None:
                continue
            owned.setdefault(ref.get("uid"), {})[int(m.group(2))] = pod
        live = set()
        for e in sets:
            if self.stop_event.is_set():
                return
            sts = e.obj
            live.add(sts["metadata"].get("uid"))
            self._sync(sts, owned.get(sts["metadata"].get("uid"), {}))
        # Garbage collection (background cascading): the set is gone, so are its pods.
        for uid, by_ordinal in owned.items():
            if uid not in live:
                for pod in by_ordinal.values():
                    self._delete(pod, "its StatefulSet was deleted")

    def _sync(self, sts, pods):
        meta, spec = sts["metadata"], sts.get("spec") or {}
        try:
            replicas = max(0, int(spec.get("replicas", 1)))
        except (TypeError, ValueError):
            replicas = 0
        parallel = spec.get("podManagementPolicy") == "Parallel"
        condemned = sorted((i for i in pods if i >= replicas), reverse=True)
        if parallel:
            for i in range(replicas):
                if i not in pods:
                    self._create(sts, i)
            for i in condemned:
                self._delete(pods[i], "scale down to %d" % replicas)
            settled = True
        elif not any(p["metadata"].get("deletionTimestamp") for p in pods.values()):
            # OrderedReady: one pod at a time, each after the ones before are ready.
            settled = False
            for i in range(replicas):
                if i not in pods:
                    self._create(sts, i)
                    break
                if not _ready(pods[i]):
                    break
            else:
                if condemned:
                    self._delete(pods[condemned[0]], "scale down to %d" % replicas)
                else:
                    settled = True
        else:
            settled = False
        if settled:
            self._roll(sts, pods, replicas)
        self._status(sts, pods, replicas)

    def _roll(self, sts, pods, replicas):
        """RollingUpdate, as the real controller does it: from the highest
        ordinal down to rollingUpdate.partition, the first pod of an older
        revision is deleted (made again from the new template by a later pass),
        and nothing moves while a pod on the way is missing, terminating or
        not ready. So pods are replaced one by one, each after the one above
        it is ready (`kubectl rollout restart` changes the template's
        annotations, which is such a new revision)."""
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return  # OnDelete: a pod gets the new template only when deleted
        try:
            partition = max(0, int((strategy.get("rollingUpdate") or {}).get("partition", 0)))
        except (TypeError, ValueError):
            partition = 0
        revision = _revision(sts)
        for i in range(replicas - 1, partition - 1, -1):
            pod = pods.get(i)
            if pod is None:
                return  # being made again
            if _pod_revision(pod) != revision and not pod["metadata"].get("deletionTimestamp"):
                self._delete(pod, "rolling update to revision %s" % revision)
                return
            if not _ready(pod):
                return

    def _create(self, sts, ordinal):
        meta, spec = sts["metadata"], sts.get("spec") or {}
        ns, name = meta["namespace"], "%s-%d" % (meta["name"], ordinal)
        tmpl = copy.deepcopy(spec.get("template") or {})
        tmeta = tmpl.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update({"apps.kubernetes.io/pod-index": str(ordinal),
                       "controller-revision-hash": _revision(sts),
                       "statefulset.kubernetes.io/pod-name": name})
        pod_meta = {"name": name, "namespace": ns, "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": meta["name"], "uid": meta.get("uid"),
                                         "controller": True, "blockOwnerDeletion": True}]}
        if tmeta.get("annotations"):
            pod_meta["annotations"] = dict(tmeta["annotations"])
        pod_spec = tmpl.get("spec") or {}
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        pod = {"metadata": pod_meta, "spec": pod_spec,
               "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        try:
            entry = self.store.create(PODS, ns, pod)
        except ApiError as e:
            if (ns, name) not in self.complained:
                self.complained.add((ns, name))
                log("cannot create pod %s/%s: %s" % (ns, name, e.message))
            return
        self.complained.discard((ns, name))
        uid = entry.obj["metadata"]["uid"]
        self.made.add(uid)
        log("created pod %s/%s" % (ns, name))
        self.kubelet.run_pod(ns, name, uid)

    def _delete(self, pod, why):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            self.store.delete(PODS, meta["namespace"], meta["name"],
                              preconditions={"uid": meta.get("uid")})
            log("deleting pod %s/%s: %s" % (meta["namespace"], meta["name"], why))
        except ApiError:
            pass  # gone or replaced meanwhile

    def _status(self, sts, pods, replicas):
        meta = sts["metadata"]
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods.values() if _ready(p))
        revision = _revision(sts)
        status = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods)}
        # The Go type omits these when zero (omitempty), except availableReplicas.
        if ready:
            status["readyReplicas"] = ready
        # The revision the set had before its template last changed stays
        # current until every pod runs the new one and is ready (what
        # `kubectl rollout status` waits for).
        current = (sts.get("status") or {}).get("currentRevision") or revision
        updated = sum(1 for p in live if _pod_revision(p) == revision)
        if updated == replicas and ready == replicas and len(pods) == replicas:
            current = revision
        on_current = sum(1 for p in live if _pod_revision(p) == current)
        if on_current:
            status["currentReplicas"] = on_current
        if updated:
            status["updatedReplicas"] = updated
        status.update({"currentRevision": current, "updateRevision": revision,
                       "collisionCount": 0, "availableReplicas": ready})
        if sts.get("status") == status:
            return
        with self.store.cond:
            try:
                current = self.store.get(STATEFULSETS, meta["namespace"], meta["name"]).obj
            except ApiError:
                return
            if current["metadata"].get("uid") != meta.get("uid"):
                return
            new = dict(current, status=status, metadata=dict(current["metadata"]))
            new["metadata"].pop("resourceVersion", None)
            try:
                self.store.replace(STATEFULSETS, meta["namespace"], meta["name"], new, subresource="status")
            except ApiError as e:
                log("status of %s/%s: %s" % (meta["namespace"], meta["name"], e.message))
