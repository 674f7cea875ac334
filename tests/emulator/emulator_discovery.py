"""Discovery documents: /version, /api, /apis, the resource lists, aggregated
discovery (apidiscovery.k8s.io/v2 and v2beta1) and a small OpenAPI v3.

Built from the resource table in emulator_resources; pure functions.
The OpenAPI v3 documents hold just what kubectl looks up in them: that PATCH
of each kind accepts the fieldValidation query parameter (so `kubectl apply`
leaves validation to the server). They carry no schemas.
"""

import hashlib
import json

from emulator_resources import RESOURCES, group_versions

__all__ = ["version", "api_versions", "api_group_list", "api_group", "resource_list",
           "aggregated", "openapi_v3_root", "openapi_v3_gv", "AGGREGATED_TYPES"]

KUBE_VERSION = ("1", "32", "v1.32.0")

# (media type params v) -> apiVersion of the aggregated document.
AGGREGATED_TYPES = {"v2": "apidiscovery.k8s.io/v2", "v2beta1": "apidiscovery.k8s.io/v2beta1"}


def version():
    return {
        "major": KUBE_VERSION[0], "minor": KUBE_VERSION[1], "gitVersion": KUBE_VERSION[2],
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
        "platform": "linux/amd64", "emulator": "ukko kube_api_emulator.py",
    }


def api_versions(server_address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group, versions):
    vs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, vs) for g, vs in group_versions().items()]}


def api_group(group):
    versions = group_versions().get(group)
    if not versions:
        return None
    return dict({"kind": "APIGroup", "apiVersion": "v1"}, **_group_entry(group, versions))


def resource_list(group, version_):
    res = [r for r in RESOURCES if r.group == group and r.version == version_]
    if not res:
        return None
    out = []
    for r in res:
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = r.short_names
        if r.categories:
            entry["categories"] = r.categories
        entry["storageVersionHash"] = r.storage_hash
        out.append(entry)
        for sub, (kind, sgroup, sversion, verbs) in r.subresources.items():
            se = {"name": "%s/%s" % (r.plural, sub), "singularName": "", "namespaced": r.namespaced,
                  "kind": kind, "verbs": list(verbs)}
            if sgroup != group or sversion != version_:
                se["group"], se["version"] = sgroup, sversion
            out.append(se)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "%s/%s" % (group, version_) if group else version_, "resources": out}


def aggregated(core, api_version):
    """APIGroupDiscoveryList for /api (core=True) or /apis."""
    groups = {}
    for r in RESOURCES:
        if bool(r.group) == core:
            continue
        versions = groups.setdefault(r.group, {})
        resources = versions.setdefault(r.version, [])
        entry = {"resource": r.plural,
                 "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                 "scope": "Namespaced" if r.namespaced else "Cluster",
                 "singularResource": r.singular, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = r.short_names
        if r.categories:
            entry["categories"] = r.categories
        if r.subresources:
            entry["subresources"] = [
                {"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                 "verbs": list(verbs)}
                for sub, (k, g, v, verbs) in r.subresources.items()]
        resources.append(entry)
    items = []
    for group, versions in groups.items():
        meta = {"creationTimestamp": None}
        if group:
            meta = {"name": group, "creationTimestamp": None}
        items.append({"metadata": meta, "versions": [
            {"version": v, "resources": rs, "freshness": "Current"} for v, rs in versions.items()]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def _gv_paths():
    out = {}
    for r in RESOURCES:
        key = "apis/%s/%s" % (r.group, r.version) if r.group else "api/" + r.version
        out.setdefault(key, []).append(r)
    return out


def openapi_v3_gv(path):
    """The OpenAPI v3 document of one group-version ("api/v1", "apis/apps/v1")."""
    res = _gv_paths().get(path)
    if res is None:
        return None
    param = {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs "
             "the server on how to handle objects in the request containing unknown or duplicate "
             "fields.", "schema": {"type": "string", "uniqueItems": True}}
    paths = {}
    for r in res:
        base = "/" + path + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        paths[base + "/{name}"] = {
            "patch": {"tags": [path], "description": "partially update the specified " + r.kind,
                      "operationId": "patch" + r.kind, "parameters": [param],
                      "responses": {"200": {"description": "OK"}},
                      "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk}}
        paths[base] = {
            "post": {"tags": [path], "description": "create a " + r.kind,
                     "operationId": "create" + r.kind, "parameters": [param],
                     "responses": {"201": {"description": "Created"}},
                     "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION[2]},
            "paths": paths, "components": {"schemas": {}}}


def openapi_v3_root():
    out = {}
    for path in _gv_paths():
        doc = json.dumps(openapi_v3_gv(path), sort_keys=True).encode()
        digest = hashlib.sha512(doc).hexdigest()[:128].upper()
        out[path] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (path, digest)}
    return {"paths": out}
