"""What tests steer: bearer tokens, injected faults, request counts.

Each class guards itself with its own lock; request threads read, the control
API (/emulator/v1/...) writes. Token values never reach a log line.
"""

import collections
import re
import secrets
import threading

from emulator_resources import ApiError

__all__ = ["Tokens", "Faults", "Fault", "RequestStats"]

ADMIN_USER = "kubernetes-admin"


class Tokens:
    """Valid tokens (full rights) and one forbidden token (authenticated, no RBAC)."""

    def __init__(self, valid, forbidden, namespace):
        self._lock = threading.Lock()
        self._valid = {valid}
        self._forbidden = forbidden
        self.forbidden_user = "system:serviceaccount:%s:ukko" % namespace

    def user(self, header):
        """(user name, allowed) for an Authorization header, or None when unauthenticated."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            if secrets.compare_digest(token, self._forbidden):
                return self.forbidden_user, False
            if any(secrets.compare_digest(token, t) for t in self._valid):
                return ADMIN_USER, True
        return None

    def rotate(self, new, grace):
        with self._lock:
            if grace:
                self._valid.add(new)
            else:
                self._valid = {new}


_FAULT_KEYS = {"path", "method", "status", "delay_ms", "truncate_bytes", "body", "count",
               "content_type", "drop", "headers"}


class Fault:
    def __init__(self, spec, fault_id):
        if not isinstance(spec, dict):
            raise ApiError(400, "a fault is a JSON object")
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ApiError(400, "unknown fault field(s): %s (allowed: %s)"
                           % (", ".join(sorted(unknown)), ", ".join(sorted(_FAULT_KEYS))))
        self.id = fault_id
        self.spec = dict(spec)
        try:
            self.path = re.compile(spec.get("path", ".*"))
        except (re.error, TypeError) as e:
            raise ApiError(400, "fault path is not a valid regular expression: %s" % e) from None
        self.method = spec.get("method")
        self.status = _int(spec, "status", None, 100, 599)
        self.delay = _int(spec, "delay_ms", 0, 0, 3600 * 1000) / 1000.0
        self.truncate = _int(spec, "truncate_bytes", None, 0, 1 << 40)
        self.count = _int(spec, "count", None, 1, 1 << 40)
        self.body = spec.get("body")
        if self.body is not None and not isinstance(self.body, str):
            raise ApiError(400, "fault body must be a string (the raw bytes to send)")
        self.content_type = spec.get("content_type", "application/json")
        self.drop = bool(spec.get("drop", False))
        self.headers = spec.get("headers") or {}
        if not isinstance(self.headers, dict):
            raise ApiError(400, "fault headers must be an object")
        self.hits = 0

    def describe(self):
        out = dict(self.spec, id=self.id, hits=self.hits)
        if self.count is not None:
            out["remaining"] = self.count - self.hits
        return out


def _int(spec, key, default, low, high):
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, "fault %s must be an integer in [%d, %d], got %r" % (key, low, high, value))
    return value


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []
        self._next = 1

    def add(self, spec):
        with self._lock:
            fault = Fault(spec, self._next)
            self._next += 1
            self._faults.append(fault)
            return fault.describe()

    def clear(self, fault_id=None):
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def list(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, method, path):
        """The first fault that applies to this request, counting it as used."""
        with self._lock:
            for f in self._faults:
                if f.method and f.method.upper() != method:
                    continue
                if not f.path.search(path):
                    continue
                f.hits += 1
                if f.count is not None and f.hits >= f.count:
                    self._faults.remove(f)
                return f
        return None


class RequestStats:
    def __init__(self, keep=500):
        self._lock = threading.Lock()
        self._paths = collections.Counter()
        self._methods = collections.Counter()
        self._recent = collections.deque(maxlen=keep)
        self._total = 0

    def count(self, method, path):
        with self._lock:
            self._total += 1
            self._paths[path] += 1
            self._methods["%s %s" % (method, path)] += 1

    def record(self, entry):
        with self._lock:
            self._recent.append(entry)

    def snapshot(self):
        with self._lock:
            return {"total": self._total, "paths": dict(self._paths),
                    "methods": dict(self._methods), "recent": [dict(e) for e in self._recent]}

    def reset(self):
        with self._lock:
            self._paths.clear()
            self._methods.clear()
            self._recent.clear()
            self._total = 0
