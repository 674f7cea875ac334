"""The emulator's state directory: CA and server certificate (made with the
openssl CLI), bearer tokens, namespace, kubeconfig, port.

Called from the main thread at start, and from a request thread when a token is
rotated. Every file is written to a temporary name and renamed, so a reader
(ukko re-reading its token, kubectl reading the kubeconfig) never sees half a file.
"""

import base64
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid

__all__ = ["write_atomic", "ensure_certs", "make_token", "write_kubeconfig", "server_url"]

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

_CONF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ukko-emulator
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
"""


def write_atomic(path, data, mode=0o644):
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _sans(host):
    names = ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
    if host and host not in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
            names.append("IP:" + host)
        except ValueError:
            names.append("DNS:" + host)
    return names


def _openssl(args, cwd, conf):
    env = dict(os.environ, OPENSSL_CONF=conf)
    proc = subprocess.run([OPENSSL] + args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed (exit %d): %s"
                           % (" ".join(args[:2]), proc.returncode, proc.stderr.decode(errors="replace").strip()))


def ensure_certs(state_dir, host):
    """Make ca.crt/ca.key and server.crt/server.key unless they are there.

    A state directory reused across restarts keeps its CA (clients keep
    trusting it); the server certificate is remade when the host changes.
    """
    sans = _sans(host)
    paths = {n: os.path.join(state_dir, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.sans")}
    have_ca = os.path.exists(paths["ca.crt"]) and os.path.exists(paths["ca.key"])
    try:
        with open(paths["server.sans"]) as f:
            same_sans = f.read().split() == sans
    except OSError:
        same_sans = False
    if have_ca and same_sans and os.path.exists(paths["server.crt"]) and os.path.exists(paths["server.key"]):
        return
    with tempfile.TemporaryDirectory(dir=state_dir, prefix=".certs.") as tmp:
        conf = os.path.join(tmp, "openssl.cnf")
        alt = []
        counts = {"IP": 0, "DNS": 0}
        for san in sans:
            kind, value = san.split(":", 1)
            counts[kind] += 1
            alt.append("%s.%d = %s" % (kind, counts[kind], value))
        with open(conf, "w") as f:
            f.write(_CONF + "\n".join(alt) + "\n")
        if not have_ca:
            _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key"], tmp, conf)
            _openssl(["req", "-x509", "-new", "-config", conf, "-extensions", "v3_ca", "-key", "ca.key",
                      "-sha256", "-days", "3650", "-subj", "/CN=ukko-emulator-ca", "-out", "ca.crt"], tmp, conf)
        else:
            shutil.copy(paths["ca.crt"], os.path.join(tmp, "ca.crt"))
            shutil.copy(paths["ca.key"], os.path.join(tmp, "ca.key"))
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key"], tmp, conf)
        _openssl(["req", "-new", "-config", conf, "-key", "server.key", "-subj", "/CN=kube-apiserver",
                  "-out", "server.csr"], tmp, conf)
        _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                  "-set_serial", "0x" + secrets.token_hex(16), "-days", "825", "-sha256",
                  "-extfile", conf, "-extensions", "v3_server", "-out", "server.crt"], tmp, conf)
        for name, mode in (("ca.key", 0o600), ("ca.crt", 0o644), ("server.key", 0o600), ("server.crt", 0o644)):
            with open(os.path.join(tmp, name), "rb") as f:
                write_atomic(paths[name], f.read(), mode)
        write_atomic(paths["server.sans"], "\n".join(sans) + "\n")


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(namespace, account):
    """A random bearer token shaped like a service-account JWT (about 900 bytes).

    The emulator only compares it; the shape is there so that clients meet the
    length and alphabet of real tokens.
    """
    now = int(time.time())
    header = {"alg": "RS256", "kid": secrets.token_urlsafe(32)}
    payload = {
        "aud": ["https://kubernetes.default.svc"], "exp": now + 3607, "iat": now,
        "iss": "https://kubernetes.default.svc",
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account, "uid": str(uuid.uuid4())}},
        "nbf": now, "sub": "system:serviceaccount:%s:%s" % (namespace, account),
    }
    return ".".join([_b64(json.dumps(header, separators=(",", ":")).encode()),
                     _b64(json.dumps(payload, separators=(",", ":")).encode()),
                     _b64(secrets.token_bytes(256))])


def server_url(host, port):
    if ":" in host:
        return "https://[%s]:%d" % (host, port)
    return "https://%s:%d" % (host, port)


def write_kubeconfig(path, url, ca_path, token, namespace):
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    text = "\n".join([
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: ukko-emulator",
        "  cluster:",
        "    server: " + q(url),
        "    certificate-authority: " + q(os.path.abspath(ca_path)),
        "contexts:",
        "- name: ukko-emulator",
        "  context:",
        "    cluster: ukko-emulator",
        "    user: ukko-emulator-admin",
        "    namespace: " + q(namespace),
        "current-context: ukko-emulator",
        "preferences: {}",
        "users:",
        "- name: ukko-emulator-admin",
        "  user:",
        "    token: " + q(token),
        "",
    ])
    write_atomic(path, text, 0o600)
