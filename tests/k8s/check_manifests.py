#!/usr/bin/env python3
"""Checks what one rendering of k8s/ (kubectl kustomize output) must hold for
a user's cluster to work, object by object: the pod's config loads with the
pod's own env and its stop fits in the grace period, the Secrets and
ConfigMaps it names are the ones the docs create, RBAC allows what discovery
and bootstrap do, the PDB covers the pods, the probes are Pekko Management's
routes on port 8558, resources are requested. Needs PyYAML (check_manifests.sh
finds or installs it). Prints what it checked; exits 1 at the first failure
with what it saw.
Usage: check_manifests.py --ukko build/ukko --name NAME rendered.yaml"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Fail(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Fail(what)


def seconds(duration):
    """"30s", "1m", "250ms", "1h" (ukko's duration syntax) -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    need(m, f"cannot read the duration {duration!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def dockerfile_user():
    """The runtime stage's USER uid, as k8s/Dockerfile says it."""
    with open(os.path.join(REPO, "k8s", "Dockerfile")) as f:
        users = re.findall(r"^USER\s+(\d+)", f.read(), re.M)
    need(users, "k8s/Dockerfile has no numeric USER line")
    return int(users[-1])


class Rendering:
    def __init__(self, docs):
        self.objs = [d for d in docs if d]

    def all(self, kind):
        return [o for o in self.objs if o["kind"] == kind]

    def one(self, kind, name=None, prefix=None):
        found = [o for o in self.all(kind)
                 if (name is None or o["metadata"]["name"] == name)
                 and (prefix is None or o["metadata"]["name"].startswith(prefix))]
        need(len(found) == 1, f"expected one {kind} {name or prefix or ''}, found "
             f"{[o['metadata']['name'] for o in found]}")
        return found[0]

    def maybe(self, kind, name):
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None


def generated(name, base):
    """kustomize's generated names: base or base-<hash>."""
    return name == base or re.fullmatch(re.escape(base) + r"-[a-z0-9]{10}", name) is not None


def check_rbac(r, sts, out):
    sa = sts["spec"]["template"]["spec"].get("serviceAccountName")
    need(sa, "the StatefulSet's pods run without a serviceAccountName")
    r.one("ServiceAccount", sa)
    verbs = {}
    bound = [b for b in r.all("RoleBinding")
             if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
                    for s in b.get("subjects", []))]
    need(bound, f"no RoleBinding binds ServiceAccount {sa}")
    for b in bound:
        ref = b["roleRef"]
        need(ref["kind"] == "Role", f"RoleBinding {b['metadata']['name']} binds a {ref['kind']}")
        role = r.one("Role", ref["name"])
        for rule in role["rules"]:
            for g in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    verbs.setdefault((g, res), set()).update(rule.get("verbs", []))
    pods, sets = verbs.get(("", "pods"), set()), verbs.get(("apps", "statefulsets"), set())
    need({"list", "watch"} <= pods,
         f"the Role allows {sorted(pods)} on pods; discovery needs list and watch")
    need("get" in sets, f"the Role allows {sorted(sets)} on statefulsets (group apps); "
         "bootstrap needs get to read spec.replicas")
    out.append(f"RBAC: pods {sorted(pods)}, statefulsets {sorted(sets)}")


def check_service(r, sts, labels, out):
    svc = r.one("Service", sts["spec"]["serviceName"])
    spec = svc["spec"]
    need(spec.get("clusterIP") == "None", f"Service {svc['metadata']['name']} is not headless")
    need(spec.get("publishNotReadyAddresses") is True,
         "the headless Service must publish unready pods (a node is ready only after it joined)")
    sel = spec.get("selector", {})
    need(sel and all(labels.get(k) == v for k, v in sel.items()),
         f"the Service selects {sel}, the pods carry {labels}")
    ports = {(p["port"], p.get("protocol", "TCP")) for p in spec["ports"]}
    for want in [(8558, "TCP"), (7355, "UDP"), (7355, "TCP")]:
        need(want in ports, f"the Service lacks port {want}: has {sorted(ports)}")


def check_pdb(r, labels, replicas, out):
    pdbs = [p for p in r.all("PodDisruptionBudget")
            if all(labels.get(k) == v
                   for k, v in p["spec"]["selector"].get("matchLabels", {}).items())]
    need(len(pdbs) == 1, f"expected one PodDisruptionBudget over the ukko pods, found {len(pdbs)}")
    spec = pdbs[0]["spec"]
    need(spec.get("maxUnavailable") == 1 or spec.get("minAvailable") == replicas - 1,
         f"the PDB lets {spec} go at once; one at a time keeps the majority")
    out.append(f"PDB: {spec.get('maxUnavailable', spec.get('minAvailable'))}")


def check_probes(c, out):
    ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
    for probe, path in [("startupProbe", "/startup"), ("livenessProbe", "/alive"),
                        ("readinessProbe", "/ready")]:
        p = c.get(probe)
        need(p and "httpGet" in p, f"the container has no {probe} with httpGet")
        g = p["httpGet"]
        port = ports.get(g["port"], g["port"])
        need(g.get("path") == path and port == 8558,
             f"{probe} asks {g.get('path')} on port {g['port']} ({port}); want {path} on 8558")
    out.append("probes: /startup /alive /ready on 8558")


def check_resources(c, out):
    res = c.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    need("cpu" in req and "memory" in req, f"the container requests {req}; want cpu and memory")
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}

    def b(q):
        m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
        need(m, f"cannot read the quantity {q}")
        return int(m.group(1)) * units.get(m.group(2), 1)
    need(b(req["memory"]) > 0, f"the memory request {req['memory']} is nothing")
    if "memory" in lim:
        need(b(lim["memory"]) >= b(req["memory"]),
             f"memory limit {lim['memory']} below its request {req['memory']}")
    out.append(f"resources: requests {req}, limits {lim}")


def resolve_env(r, c, out):
    """The container's env as the kubelet would set it, with status.podIP
    standing in; secretKeyRef values are left out (they come from Secrets
    the user creates) and returned as (name, secret, key, optional)."""
    env, secret_refs = {}, []
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        src = e.get("valueFrom", {})
        if "fieldRef" in src:
            env[e["name"]] = {"status.podIP": "10.244.0.7", "metadata.name": "ukko-0",
                              "metadata.namespace": "default"}[src["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            cm = r.maybe("ConfigMap", ref["name"])
            need(cm is not None, f"env {e['name']} reads ConfigMap {ref['name']}, "
                 "which the rendering does not make")
            need(ref["key"] in cm.get("data", {}),
                 f"env {e['name']} reads key {ref['key']} that ConfigMap {ref['name']} lacks")
            env[e["name"]] = cm["data"][ref["key"]]
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            secret_refs.append((e["name"], ref["name"], ref["key"], ref.get("optional", False)))
        else:
            raise Fail(f"env {e['name']}: unexpected source {src}")
    return env, secret_refs


def expand(arg, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def mounts_of(r, pod, c):
    """mountPath -> (volume kind, object name, optional) for the container."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"])
        need(v is not None, f"volumeMount {m['name']} names no volume")
        if "configMap" in v:
            out[m["mountPath"]] = ("configMap", v["configMap"]["name"], v["configMap"].get("optional", False))
        elif "secret" in v:
            out[m["mountPath"]] = ("secret", v["secret"]["secretName"], v["secret"].get("optional", False))
        else:
            out[m["mountPath"]] = ("other", m["name"], True)
    return out


def mounted(mounts, path):
    for mp, what in mounts.items():
        if path.startswith(mp.rstrip("/") + "/"):
            return mp, what
    raise Fail(f"{path} is under no volume mount ({sorted(mounts)})")


def check_pod_config(r, sts, c, ukko, out):
    pod = sts["spec"]["template"]["spec"]
    env, secret_refs = resolve_env(r, c, out)
    args = [expand(a, env) for a in c.get("args", [])]
    need("$(" not in " ".join(args), f"args {args} name a variable the env lacks")
    need(args[:1] == ["run"] and "--config" in args, f"args {args}: want run --config FILE")
    cfg_path = args[args.index("--config") + 1]
    mounts = mounts_of(r, pod, c)
    mp, (kind, cm_name, _) = mounted(mounts, cfg_path)
    need(kind == "configMap", f"--config {cfg_path} is not in a ConfigMap mount")
    cm = r.maybe("ConfigMap", cm_name)
    need(cm is not None, f"the config volume names ConfigMap {cm_name}, which is not rendered")
    fname = os.path.relpath(cfg_path, mp)
    need(fname in cm.get("data", {}), f"ConfigMap {cm_name} has no {fname}")
    if "--app" in args:
        app = args[args.index("--app") + 1]
        helptext = subprocess.run([ukko, "--help"], capture_output=True, text=True).stdout
        builtins = re.search(r"--app NAME\s+run a built-in application: ([^\n]*)", helptext)
        need(builtins and app in [a.strip() for a in builtins.group(1).split(",")],
             f"--app {app!r} is not a built-in application of this ukko ({builtins and builtins.group(1)})")

    # The config as the pod loads it: its file plus its env, nothing of ours.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, fname)
        with open(path, "w") as f:
            f.write(cm["data"][fname])
        clean = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
        clean.update(env)
        p = subprocess.run([ukko, "check-config", path], capture_output=True, text=True, env=clean)
        need(p.returncode == 0, f"the pod's config does not load with the pod's env:\n{p.stderr}")
        eff = json.loads(p.stdout)

    shutdown = seconds(eff["cluster"]["shutdown-timeout"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(grace > shutdown, f"terminationGracePeriodSeconds {grace} is not above "
         f"cluster.shutdown-timeout {eff['cluster']['shutdown-timeout']}: SIGKILL would cut hand-offs")
    out.append(f"stop: grace {grace}s > cluster.shutdown-timeout {shutdown:g}s")

    need(eff["kafka"]["bootstrap-servers"], "kafka.bootstrap-servers is empty in the pod's config")
    # The cluster keyring: a required Secret mount named ukko-keyring.
    kr = eff["cluster"]["keyring-path"]
    need(kr, "cluster.keyring-path is not set: a node of a cluster needs the keyring")
    _, (kind, secret, optional) = mounted(mounts, kr)
    need(kind == "secret" and generated(secret, "ukko-keyring") and not optional,
         f"the keyring {kr} is in {kind} {secret} (optional {optional}); want the Secret ukko-keyring, required")
    tok = eff["management"]["token-path"]
    need(tok, "management.token-path is not set")
    _, (kind, secret, _) = mounted(mounts, tok)
    need(kind == "secret" and generated(secret, "ukko-mgmt-token"),
         f"management.token-path {tok} is in {kind} {secret}; want the Secret ukko-mgmt-token")
    props = [s for s in secret_refs if s[0] == "UKKO_KAFKA_PROPERTIES"]
    need(props and props[0][1] == "ukko-kafka" and props[0][2] == "properties",
         f"UKKO_KAFKA_PROPERTIES comes from {props}; want Secret ukko-kafka, key properties")
    need(any(w[0] == "secret" and generated(w[1], "ukko-kafka") for w in mounts.values()),
         "the Secret ukko-kafka (the Kafka client's certificate files) is not mounted")
    # A Secret the rendering makes itself (kind's keyring) must be one ukko reads.
    for s in r.all("Secret"):
        if generated(s["metadata"]["name"], "ukko-keyring"):
            import base64
            raw = s.get("data", {}).get("keyring.json")
            need(raw, f"Secret {s['metadata']['name']} has no keyring.json")
            keys = json.loads(base64.b64decode(raw))
            need(isinstance(keys, list) and keys and
                 all(len(base64.b64decode(k)) == 32 for k in keys),
                 "the rendered keyring is not a JSON list of base64 AES-256 keys")
    out.append(f"config: loads; kafka {eff['kafka']['bootstrap-servers']}; secrets "
               f"ukko-keyring, ukko-mgmt-token, ukko-kafka")
    return eff


def check_kafka_in_cluster(r, eff, out):
    """An overlay that brings its own broker: the bootstrap servers name its
    Service, and it advertises the same address (or clients could not follow)."""
    bs = eff["kafka"]["bootstrap-servers"]
    host, port = bs.split(",")[0].rsplit(":", 1)
    svc = r.maybe("Service", host.split(".")[0])
    if svc is None:
        return
    need(int(port) in [p["port"] for p in svc["spec"]["ports"]],
         f"Service {host} has no port {port}")
    dep = [d for d in r.all("Deployment")
           if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                  for k, v in svc["spec"]["selector"].items())]
    need(len(dep) == 1, f"Service {host} selects {len(dep)} Deployments")
    pod = dep[0]["spec"]["template"]["spec"]
    need(pod.get("enableServiceLinks") is False,
         "the broker's pod gets KAFKA_* service variables, which its image takes for settings")
    env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    need(f"://{host}:{port}" in (env.get("KAFKA_ADVERTISED_LISTENERS") or ""),
         f"the broker advertises {env.get('KAFKA_ADVERTISED_LISTENERS')}, clients use {bs}")
    job = [j for j in r.all("Job") if "--create" in json.dumps(j)]
    need(job, "no Job creates the application's topics")
    need("orders" in json.dumps(job[0]), "the topics Job does not create orders")
    out.append(f"kafka in the cluster: Service {host}:{port}, advertised alike, topics Job")


def check_kind_script(r, sts, out):
    """k8s/kind/up.sh loads one image and waits on objects by name: they must
    be the ones this rendering makes (the script itself cannot run here)."""
    with open(os.path.join(REPO, "k8s", "kind", "up.sh")) as f:
        script = f.read()
    m = re.search(r"^image=(\S+)", script, re.M)
    need(m, "k8s/kind/up.sh sets no image=")
    c = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "ukko"][0]
    need(c["image"] == m.group(1), f"up.sh builds and loads {m.group(1)}, the pods run {c['image']}")
    need(c.get("imagePullPolicy") in ("IfNotPresent", "Never"),
         f"imagePullPolicy {c.get('imagePullPolicy')} would pull {c['image']}, which only the kind node has")
    for kind, name in re.findall(r"\b(deployment|job|statefulset)/([a-z0-9-]+)", script):
        k = {"deployment": "Deployment", "job": "Job", "statefulset": "StatefulSet"}[kind]
        need(r.maybe(k, name) is not None, f"up.sh waits for {kind}/{name}, which the kind overlay does not make")
    for sel in re.findall(r"-l '([^']+)'", script):
        m = re.fullmatch(r"app in \(([^)]*)\)", sel)
        need(m, f"up.sh's selector {sel!r} is not understood here")
        for app in [a.strip() for a in m.group(1).split(",")]:
            need(any(o["spec"]["template"]["metadata"]["labels"].get("app") == app
                     for o in r.objs if o["kind"] in ("Deployment", "StatefulSet")),
                 f"up.sh waits for pods of app={app}, which no Deployment or StatefulSet makes")
    out.append(f"up.sh: image {c['image']}, the objects it waits for exist")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ukko", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("rendered")
    a = ap.parse_args()
    with open(a.rendered) as f:
        r = Rendering(list(yaml.safe_load_all(f)))
    out = []
    try:
        sts = r.one("StatefulSet", "ukko")
        pod = sts["spec"]["template"]["spec"]
        labels = sts["spec"]["template"]["metadata"]["labels"]
        need(all(labels.get(k) == v for k, v in sts["spec"]["selector"]["matchLabels"].items()),
             "the StatefulSet's selector does not match its pods")
        need(pod.get("enableServiceLinks") is False,
             "enableServiceLinks is not false: a Service named ukko-* would give the pods "
             "UKKO_* variables, which ukko refuses")
        uid = dockerfile_user()
        sc = pod.get("securityContext", {})
        need(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == uid,
             f"the pods run as {sc}; k8s/Dockerfile's user is {uid}")
        c = [c for c in pod["containers"] if c["name"] == "ukko"]
        need(c, "the StatefulSet has no container named ukko")
        c = c[0]
        check_rbac(r, sts, out)
        check_service(r, sts, labels, out)
        check_pdb(r, labels, sts["spec"].get("replicas", 1), out)
        check_probes(c, out)
        check_resources(c, out)
        eff = check_pod_config(r, sts, c, a.ukko, out)
        check_kafka_in_cluster(r, eff, out)
        if a.name.rstrip("/").endswith("overlays/kind"):
            check_kind_script(r, sts, out)
    except Fail as e:
        print(f"FAIL: {a.name}: {e}")
        return 1
    print(f"{a.name}: " + "; ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
