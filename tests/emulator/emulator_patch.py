"""The three PATCH formats of the Kubernetes API, applied to plain JSON values.

Pure functions, called from request threads. They never change their inputs:
every result is a new value that may share untouched subtrees with the input,
which is safe because the store never mutates an object once it holds it.
A malformed patch raises PatchError (a 422 or 400 at the server).
"""

import copy

__all__ = ["PatchError", "merge_patch", "strategic_merge_patch", "json_patch"]


class PatchError(ValueError):
    def __init__(self, message, code=422):
        super().__init__(message)
        self.code = code


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# patchMergeKey of the lists that the Kubernetes types mark patchStrategy=merge.
# Any other list is replaced whole, as strategic merge does for atomic lists.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "podIPs": "ip",
    "hostIPs": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
# Lists of scalars with patchStrategy=merge: a patch adds to them.
_MERGE_SCALARS = {"finalizers"}


def strategic_merge_patch(target, patch):
    """A subset of strategic merge patch, enough for kubectl apply/label/edit.

    Handles the merge keys of the common pod/StatefulSet lists, the directives
    $patch (replace, delete, merge), $setElementOrder/<list>,
    $deleteFromPrimitiveList/<list> and $retainKeys. Lists it does not know are
    replaced, as merge patch would.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError('Unknown patch type: "%s"' % directive, code=400)
    result = dict(target) if isinstance(target, dict) else {}
    orders = {}
    retain = None
    for key, value in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            retain = set(value or [])
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                drop = value or []
                result[field] = [v for v in result[field] if v not in drop]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and key in _MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, _MERGE_KEYS[key])
        elif isinstance(value, list) and key in _MERGE_SCALARS and isinstance(result.get(key), list):
            merged = list(result[key])
            merged += [v for v in value if v not in merged]
            result[key] = merged
        elif isinstance(value, list):
            result[key] = [strip_directives(v) for v in value
                           if not (isinstance(v, dict) and v.get("$patch") == "delete")]
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        result[field] = _apply_order(result.get(field), order, _MERGE_KEYS.get(field))
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def strip_directives(value):
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


def _merge_list(current, patch_items, key):
    result = list(current)
    for item in patch_items:
        if not isinstance(item, dict) or key not in item:
            if isinstance(item, dict) and item.get("$patch") == "replace":
                return [strip_directives(i) for i in patch_items if i is not item]
            raise PatchError("map: %r does not contain declared merge key: %s" % (item, key), code=400)
        idx = next((i for i, cur in enumerate(result)
                    if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
            continue
        if idx is None:
            result.append(strip_directives(item))
        else:
            result[idx] = strategic_merge_patch(result[idx], item)
    return result


def _apply_order(items, order, key):
    if not isinstance(items, list) or not isinstance(order, list):
        return items

    def ident(v):
        return v.get(key) if key and isinstance(v, dict) else v

    wanted = [ident(o) for o in order]
    rank = {w: i for i, w in enumerate(wanted)}
    # Items named in the order come first in that order; the rest keep theirs.
    ordered = sorted((v for v in items if ident(v) in rank), key=lambda v: rank[ident(v)])
    return ordered + [v for v in items if ident(v) not in rank]


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer: %r" % path, code=400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, tokens):
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError("doc is missing path: %s" % "/".join(tokens))
            cur = cur[tok]
        elif isinstance(cur, list):
            try:
                cur = cur[int(tok)]
            except (ValueError, IndexError):
                raise PatchError("doc is missing path: %s" % "/".join(tokens)) from None
        else:
            raise PatchError("doc is missing path: %s" % "/".join(tokens))
    return cur


def json_patch(doc, operations):
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations", code=400)
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("invalid json patch operation: %r" % (op,), code=400)
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("missing value for %s operation" % kind, code=400)
        if kind == "test":
            if _walk(doc, tokens) != op["value"]:
                raise PatchError("testing value %s failed" % op["path"])
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, tokens, value)
        elif kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, tokens)
        elif kind == "replace":
            _walk(doc, tokens)  # must exist
            doc = _add(_remove(doc, tokens), tokens, copy.deepcopy(op["value"]))
        else:
            raise PatchError("Unexpected kind: %s" % kind, code=400)
    return doc


def _add(doc, tokens, value):
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise PatchError("invalid array index: %s" % last) from None
            if idx < 0 or idx > len(parent):
                raise PatchError("add operation does not apply: index out of range")
            parent.insert(idx, value)
    else:
        raise PatchError("doc is missing path: %s" % "/".join(tokens))
    return doc


def _remove(doc, tokens):
    if not tokens:
        raise PatchError("cannot remove the whole document", code=400)
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        try:
            del parent[int(last)]
        except (ValueError, IndexError):
            raise PatchError("remove operation does not apply: doc is missing path") from None
    else:
        raise PatchError("remove operation does not apply: doc is missing path: %s" % "/".join(tokens))
    return doc
