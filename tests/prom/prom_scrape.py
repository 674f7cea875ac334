#!/usr/bin/env python3
"""A real Prometheus scrapes 3 ukko nodes, and the Grafana dashboard's
expressions stand on what it scraped.

`ukko dev-kafka` (orders:6, orders-processed:6, orders.dlq:1), three
`ukko run --app orders` nodes on 127.0.10.2-4 (management port 8558), orders
produced by kcat (murmur2, keyed by customer, every partition gets some), and
Debian's `prometheus` run directly (not its systemd service) with our own
config, scraping the three every second, its TSDB in a temp folder, its API on
127.0.10.5:19090. Checked:
- every target is up and its last scrape has no error (the content type and
  the text are accepted);
- the HTTP API (/api/v1/query) returns ukko_kafka_lag_records,
  ukko_kafka_lag_seconds and ukko_kafka_records_processed_total for every
  partition of orders, and the processed counts add up to what was produced;
- `promtool check metrics` is clean on each node's /metrics;
- every metric name in every expression of k8s/grafana/ukko-dashboard.json is
  one Prometheus ingested from these nodes (its own /api/v1/label/__name__
  list, not a list of ours), and every expression evaluates without error to
  at least one series. The names it ingested are written to
  scrape-names.txt in the build folder (PROM_SCRAPE_NAMES_OUT) for reference;
- the alerting rules of docs/metrics.md pass `promtool check rules` and name
  only scraped metrics;
- a record its handler refuses, while retried, raises the partition's
  ukko_kafka_lag_seconds to 2 s and more and counts in
  ukko_kafka_records_failed_total; once dead-lettered the lag is 0 again;
- the nodes, scraped all along, exit 0 on SIGTERM.

Needs prometheus, promtool and kcat (scripts/install-deps.sh installs them);
without them it prints SKIPPED and exits 0. Cleans up its processes and temp
folder on every path, SIGTERM and SIGINT too. About 40 s.

    python3 tests/prom/prom_scrape.py build/ukko
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DASHBOARD = os.path.join(ROOT, "k8s", "grafana", "ukko-dashboard.json")
PRODUCE = os.path.join(ROOT, "tests", "streams", "produce_orders.py")
NODES = ["127.0.10.2", "127.0.10.3", "127.0.10.4"]
MGMT_PORT = 8558
PROM = ("127.0.10.5", 19090)  # not 9090: a Prometheus service may hold *:9090
PARTS = 6
RECORDS = 600

procs = []  # (name, Popen), started by us, each in its own process group
tmp = None


def log(msg):
    print("prom_scrape: " + msg, flush=True)


def skip(why):
    print("SKIPPED: " + why, flush=True)
    sys.exit(0)


def cleanup():
    global tmp
    for name, p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for name, p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    procs.clear()
    if tmp:
        if os.environ.get("UKKO_TEST_KEEP"):
            log("logs kept in " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None


def on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


def spawn(name, argv, env=None, stdin=None, stdout=None):
    logf = open(os.path.join(tmp, name + ".log"), "wb")
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout or logf, stderr=logf,
                         start_new_session=True)
    procs.append((name, p))
    return p


def wait_for(what, timeout, check):
    """Polls check() until it returns something true; fails with the last
    thing it said (check returns (value, seen))."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        ok, seen = check()
        if ok:
            return ok
        time.sleep(0.25)
    raise AssertionError("%s: not within %d s; last seen: %s" % (what, timeout, seen))


def http_get(host, port, path, timeout=3):
    with urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def free(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def metrics_of(host):
    """{(name, labels-string): value} of a node's /metrics."""
    _, _, body = http_get(host, MGMT_PORT, "/metrics")
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def prom_query(expr):
    q = urllib.parse.urlencode({"query": expr})
    try:
        _, _, body = http_get(*PROM, "/api/v1/query?" + q, timeout=5)
    except urllib.error.HTTPError as e:
        return {"status": "error", "error": e.read().decode()}
    return json.loads(body)


def by_partition(expr):
    """{partition: value} of an instant query whose series carry partition."""
    r = prom_query(expr)
    if r.get("status") != "success":
        return None, r
    vals = {}
    for s in r["data"]["result"]:
        part = s["metric"].get("partition")
        if part is not None:
            vals[int(part)] = vals.get(int(part), 0) + float(s["value"][1])
    return vals, vals


# ------------------------------------------------------- the dashboard's names

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset", "inf", "nan", "le"}


def grafana_to_promql(expr):
    """The expression as Grafana would send it for the whole range."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "5m")
    return re.sub(r'\$\{?[A-Za-z_][A-Za-z0-9_]*\}?', ".*", expr)


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not inside a
    string, a label matcher or a by/without/on/ignoring list, not followed by
    "(" (functions and aggregations), and not PromQL's keywords."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r'\{[^}]*\}', ' ', e)
    e = re.sub(r'\[[^\]]*\]', ' ', e)
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)
    names = set()
    for m in re.finditer(r'(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?', e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_exprs(yaml_text):
    """The expr values of a rules file: "expr:" and the lines indented deeper."""
    out, cur, indent = [], None, 0
    for line in yaml_text.splitlines():
        m = re.match(r'^(\s*)expr:\s*(.*)$', line)
        if m:
            cur, indent = [m.group(2)], len(m.group(1))
            out.append(cur)
        elif cur is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            cur.append(line.strip())
        else:
            cur = None
    return [" ".join(e) for e in out]


def dashboard_exprs():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            m = re.match(r'label_values\((.*),\s*\w+\)$', q.strip())
            if m:
                out.append(("variable " + v.get("name", "?"), m.group(1)))
    return out


# --------------------------------------------------------------------- main

def main():
    global tmp
    ukko = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/ukko")
    for tool in ("prometheus", "promtool", "kcat"):
        if not shutil.which(tool):
            skip("%s is not installed (scripts/install-deps.sh installs it)" % tool)
    for h in NODES:
        if not free(h, MGMT_PORT) or not free(h, 7355):
            skip("%s:%d or :7355 is taken (another run of this test?): this test owns "
                 "127.0.10.2-5" % (h, MGMT_PORT))
    if not free(*PROM):
        skip("%s:%d is taken (another run of this test?)" % PROM)

    tmp = tempfile.mkdtemp(prefix="ukko-prom-")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # The broker: its first stdout line is the bootstrap servers; stdin stays
    # open (its fault channel) until we stop it.
    dk = spawn("dev-kafka", [ukko, "dev-kafka", "--topic", "orders:%d" % PARTS,
                             "--topic", "orders-processed:%d" % PARTS,
                             "--topic", "orders.dlq:1", "--log-format", "text"],
               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    bootstrap = dk.stdout.readline().decode().strip()
    if not bootstrap:
        raise AssertionError("ukko dev-kafka printed no bootstrap line (log: %s/dev-kafka.log)"
                             % tmp)
    log("dev-kafka at " + bootstrap)

    for i, h in enumerate(NODES):
        base = {k: v for k, v in os.environ.items() if not k.startswith("UKKO_")}
        env = dict(base,
                   UKKO_MANAGEMENT_HOSTNAME=h, UKKO_MANAGEMENT_PORT=str(MGMT_PORT),
                   UKKO_CLUSTER_HOSTNAME=h, UKKO_CLUSTER_SEED_NODES=NODES[0] + ":7355",
                   UKKO_CLUSTER_INSECURE="true", UKKO_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                   UKKO_LOG_FORMAT="text", UKKO_KAFKA_COMMIT_MAX_INTERVAL="500ms",
                   # A bad record is held about 18 s before its dead letter.
                   UKKO_KAFKA_MAX_RETRIES="5", UKKO_KAFKA_RETRY_BACKOFF="2s",
                   UKKO_KAFKA_RETRY_BACKOFF_MAX="4s")
        spawn("node%d" % i, [ukko, "run", "--app", "orders"], env=env)

    def ready():
        for name, p in procs:
            if p.poll() is not None:
                raise AssertionError("%s exited with %d before it was ready" % (name, p.returncode))
        seen = []
        for h in NODES:
            try:
                seen.append(http_get(h, MGMT_PORT, "/ready")[0])
            except OSError as e:
                seen.append(str(e))
        return all(s == 200 for s in seen), seen
    wait_for("the 3 nodes /ready", 60, ready)

    def spread():
        # Every partition runs on exactly one node, and each node runs some.
        counts = []
        for h in NODES:
            try:
                m = metrics_of(h)
            except OSError as e:
                return False, "%s: %s" % (h, e)
            counts.append(sum(v for (n, l), v in m.items() if n == "ukko_kafka_partitions"))
        return counts == [PARTS // 3] * 3, counts
    # Balanced, so that no partition moves once records flow (a counter
    # restarts on its new owner; the sum below reads every owner's anyway).
    wait_for("the 6 partitions of orders balanced over the 3 nodes", 90, spread)

    prod = subprocess.Popen([sys.executable, PRODUCE, str(RECORDS), "2000", "0", "300"],
                            stdout=subprocess.PIPE)
    kc = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "orders", "-K", "\t",
                         "-X", "partitioner=murmur2_random"], stdin=prod.stdout,
                        capture_output=True, timeout=60)
    prod.wait()
    if kc.returncode != 0:
        raise AssertionError("kcat -P failed: %s" % kc.stderr.decode())
    log("produced %d orders" % RECORDS)

    # Prometheus, as a user runs it: its own config, no systemd unit.
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: ukko\n    static_configs:\n"
                "      - targets: [%s]\n" % ", ".join('"%s:%d"' % (h, MGMT_PORT)
                                                    for h in NODES))
    spawn("prometheus", ["prometheus", "--config.file=" + cfg,
                         "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                         "--web.listen-address=%s:%d" % PROM, "--log.level=warn"])

    def targets():
        try:
            _, _, body = http_get(*PROM, "/api/v1/targets")
        except OSError as e:
            return False, str(e)
        act = json.loads(body)["data"]["activeTargets"]
        seen = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in act]
        return len(act) == 3 and all(t["health"] == "up" and not t["lastError"]
                                     for t in act), seen
    wait_for("Prometheus scraping the 3 nodes without error", 60, targets)

    def done():
        # Per partition, the last value of each owner's series: a partition
        # that moved has one per node that ran it.
        vals, seen = by_partition("sum by (partition) "
                                  "(last_over_time(ukko_kafka_records_processed_total[10m]))")
        return (vals is not None and len(vals) == PARTS and sum(vals.values()) == RECORDS,
                seen)
    wait_for("ukko_kafka_records_processed_total in Prometheus for every partition, "
             "adding up to %d" % RECORDS, 90, done)

    for name in ("ukko_kafka_lag_records", "ukko_kafka_lag_seconds"):
        def every(name=name):
            vals, seen = by_partition('%s{topic="orders"}' % name)
            return vals is not None and sorted(vals) == list(range(PARTS)), seen
        wait_for("%s in Prometheus for partitions 0-%d" % (name, PARTS - 1), 60, every)

    def drained():
        vals, seen = by_partition('ukko_kafka_lag_records{topic="orders"}')
        return vals is not None and len(vals) == PARTS and not any(vals.values()), seen
    wait_for("ukko_kafka_lag_records back to 0 on every partition once all is committed",
             60, drained)
    log("Prometheus has lag and records series for partitions 0-%d" % (PARTS - 1))

    for h in NODES:
        status, ctype, body = http_get(h, MGMT_PORT, "/metrics")
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", \
            "%s/metrics: Content-Type %r" % (h, ctype)
        pc = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                            capture_output=True, timeout=30)
        assert pc.returncode == 0, "promtool check metrics on %s/metrics: %s%s" % (
            h, pc.stdout.decode(), pc.stderr.decode())
    log("promtool check metrics is clean on the 3 nodes")

    _, _, body = http_get(*PROM, "/api/v1/label/__name__/values")
    scraped = set(json.loads(body)["data"])
    out = os.environ.get("PROM_SCRAPE_NAMES_OUT")
    if out:
        with open(out, "w") as f:
            f.write("".join(n + "\n" for n in sorted(scraped)))

    exprs = dashboard_exprs()
    assert exprs, "%s has no expressions" % DASHBOARD
    missing = []
    for title, expr in exprs:
        for n in sorted(metric_names(expr)):
            if n not in scraped:
                missing.append("%s: %s (in %s)" % (title, n, expr))
    assert not missing, ("the dashboard names metrics the nodes do not serve:\n  "
                         + "\n  ".join(missing))
    for title, expr in exprs:
        q = grafana_to_promql(expr)

        def evaluates(q=q):
            r = prom_query(q)
            if r.get("status") != "success":
                raise AssertionError("panel %r: Prometheus rejected %s: %s"
                                     % (title, q, r.get("error")))
            return len(r["data"]["result"]) > 0, r["data"]["result"]
        wait_for("panel %r: %s returning a series" % (title, q), 30, evaluates)
    log("the dashboard's %d expressions name %d metrics, all scraped, all evaluate"
        % (len(exprs), len(set().union(*(metric_names(e) for _, e in exprs)))))

    # The alerting rules docs/metrics.md offers: promtool accepts them, and
    # they name only scraped metrics.
    with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
        doc = f.read()
    rules = doc.split("## What to alert on", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    path = os.path.join(tmp, "rules.yml")
    with open(path, "w") as f:
        f.write(rules)
    pc = subprocess.run(["promtool", "check", "rules", path], capture_output=True, timeout=30)
    assert pc.returncode == 0, "promtool check rules on docs/metrics.md's rules: %s%s" % (
        pc.stdout.decode(), pc.stderr.decode())
    unknown = sorted(n for e in rule_exprs(rules) for n in metric_names(e) if n not in scraped)
    assert not unknown, "docs/metrics.md's rules name metrics not scraped: %s" % unknown
    log("docs/metrics.md's alerting rules pass promtool check rules")

    # A record its handler refuses: while it waits for its retries, the
    # partition's lag in seconds shows its age and failures count; once
    # dead-lettered, the lag is 0 again.
    kc = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "orders", "-K", "\t",
                         "-X", "partitioner=murmur2_random"],
                        input=b"c7\tnot an order\n", capture_output=True, timeout=60)
    assert kc.returncode == 0, "kcat -P failed: %s" % kc.stderr.decode()

    def stuck():
        r = prom_query('max(ukko_kafka_lag_seconds{topic="orders"}) >= 2 and '
                       'max(sum by (partition) (ukko_kafka_records_failed_total'
                       '{topic="orders"})) >= 1')
        return r.get("status") == "success" and len(r["data"]["result"]) > 0, r
    wait_for("ukko_kafka_lag_seconds reaching 2 s and ukko_kafka_records_failed_total "
             "counting while a bad record is retried", 15, stuck)

    def dead_lettered():
        dl, _ = by_partition('ukko_kafka_dead_letters_total{topic="orders"}')
        ls, _ = by_partition('ukko_kafka_lag_seconds{topic="orders"}')
        ok = dl is not None and ls is not None and sum(dl.values()) == 1 and \
            len(ls) == PARTS and not any(ls.values())
        return ok, {"dead_letters": dl, "lag_seconds": ls}
    wait_for("the bad record dead-lettered and ukko_kafka_lag_seconds back to 0", 60,
             dead_lettered)
    log("a record held by its retries shows in ukko_kafka_lag_seconds, and leaves it")

    # Scrapes under way change nothing about a stop: each node exits 0 on
    # SIGTERM (and a sanitizer build's report would make it non-zero).
    for name, p in procs:
        if name.startswith("node"):
            os.killpg(p.pid, signal.SIGTERM)
    for name, p in procs:
        if name.startswith("node"):
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                raise AssertionError("%s still running 60 s after SIGTERM" % name)
            assert rc == 0, "%s exited with %d after SIGTERM (see its log)" % (name, rc)
    log("the 3 nodes stopped on SIGTERM with exit 0")


if __name__ == "__main__":
    rc = 0
    try:
        main()
        log("passed")
    except AssertionError as e:
        print("FAILED: %s" % e, flush=True)
        for name, _ in procs:
            path = os.path.join(tmp, name + ".log")
            with open(path, errors="replace") as f:
                tail = f.readlines()[-15:]
            print("--- last lines of %s.log:\n%s" % (name, "".join(tail)), flush=True)
        rc = 1
    finally:
        cleanup()
    sys.exit(rc)
