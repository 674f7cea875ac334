/* bench_shards_nodes.c: the ukko nodes of bench_kafka_shards as real
 * `ukko run --app <app>` processes on the benchmarks' address, each on free
 * ports of its own (the first is the seed), what their routes and /proc say,
 * and the broker-side plumbing: topics made anew for every figure, the
 * group offsets and watermarks. Main thread. Invariant: no node outlives the
 * program (PDEATHSIG from ut_spawn, and ks_cluster_destroy kills the rest). */
#include "bench_kafka_shards.h"
#include "ukko_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- nodes ------------------------------------------------------------------- */

/* A port free for both TCP and UDP on KS_HOST (gossip uses both on one port). The
 * kernel picks it; it is free again when we close it, so another program could
 * take it first: a node that cannot bind then fails to start, and says so. */
static int free_port(void)
{
    for (int tries = 0; tries < 20; tries++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof(a);
        inet_pton(AF_INET, KS_HOST, &a.sin_addr);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (t < 0)
            return -1;
        if (bind(t, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(t, (struct sockaddr *)&a, &len) < 0) {
            close(t);
            return -1;
        }
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int ok = u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (u >= 0)
            close(u);
        close(t);
        if (ok)
            return ntohs(a.sin_port);
    }
    return -1;
}

int ks_cluster_init(ks_cluster_t *c, const char *ukko, const char *bootstrap, const char *app,
                    int partitions, char *why, size_t why_size)
{
    memset(c, 0, sizeof(*c));
    c->ukko = ukko;
    c->bootstrap = bootstrap;
    c->app = app;
    c->partitions = partitions;
    c->dir = ut_tempdir();
    if (!c->dir) {
        snprintf(why, why_size, "mkdtemp under /tmp: %s", strerror(errno));
        return -1;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/ring.json", c->dir);
    if (ut_keyring_write(path, NULL, 0) < 0) {
        snprintf(why, why_size, "writing the cluster keyring %s (openssl rand) failed", path);
        return -1;
    }
    return 0;
}

int ks_node_start(ks_cluster_t *c, int i, char *why, size_t why_size)
{
    static int started;  /* numbers the logs: a slot is used by several processes */
    ks_node_t *n = &c->n[i];
    n->mport = free_port();
    n->cport = free_port();
    if (n->mport < 0 || n->cport < 0 || n->mport == n->cport) {
        snprintf(why, why_size, "no free port on %s for node %d", KS_HOST, i + 1);
        return -1;
    }
    if (i == 0)
        c->seed_cport = n->cport;
    snprintf(n->log, sizeof(n->log), "%s/node%d-%d.log", c->dir, i + 1, ++started);
    char mh[64], mp[64], ch[64], cp[64], seed[96], kr[700], kb[600];
    snprintf(mh, sizeof(mh), "UKKO_MANAGEMENT_HOSTNAME=%s", KS_HOST);
    snprintf(mp, sizeof(mp), "UKKO_MANAGEMENT_PORT=%d", n->mport);
    snprintf(ch, sizeof(ch), "UKKO_CLUSTER_HOSTNAME=%s", KS_HOST);
    snprintf(cp, sizeof(cp), "UKKO_CLUSTER_PORT=%d", n->cport);
    snprintf(seed, sizeof(seed), "UKKO_CLUSTER_SEED_NODES=%s:%d", KS_HOST, c->seed_cport);
    snprintf(kr, sizeof(kr), "UKKO_CLUSTER_KEYRING_PATH=%s/ring.json", c->dir);
    snprintf(kb, sizeof(kb), "UKKO_KAFKA_BOOTSTRAP_SERVERS=%s", c->bootstrap);
    /* Every other setting is the product's default (kafka.commit.max-batch 1000,
     * max-interval 1s, ...): the figures are what a user gets. */
    const char *env[8 + KS_MAX_ENV + 1] = {mh, mp, ch, cp, seed, kr, kb, "UKKO_LOG_FORMAT=text"};
    for (int k = 0; c->env && c->env[k] && k < KS_MAX_ENV; k++)
        env[8 + k] = c->env[k];
    const char *argv[] = {c->ukko, "run", "--app", c->app, NULL};
    n->pid = ut_spawn(argv, env, n->log);
    if (n->pid <= 0) {
        n->pid = 0;
        snprintf(why, why_size, "spawning %s failed: %s", c->ukko, strerror(errno));
        return -1;
    }
    return 0;
}

/* The last lines of a node's log, for a failure message. */
static void log_tail(const ks_node_t *n, char *out, size_t out_size)
{
    size_t len = 0;
    char *all = ut_slurp(n->log, &len);
    const char *p = all ? all + len : NULL;
    /* Back to the start of the sixth line from the end. */
    for (int lines = 0; p && p > all; p--)
        if (p[-1] == '\n' && p != all + len && ++lines == 6)
            break;
    snprintf(out, out_size, "%s", p ? p : "(no log)");
    free(all);
}

int ks_node_ready(ks_cluster_t *c, int i, int timeout_ms, char *why, size_t why_size)
{
    ks_node_t *n = &c->n[i];
    for (int64_t end = ut_now_ms() + timeout_ms; !kb_stop;) {
        ukko_buf_t b;
        ukko_buf_init(&b, 1024);
        int st = ut_http(KS_HOST, n->mport, "GET", "/ready", &b, 1000);
        ukko_buf_destroy(&b);
        if (st == 200)
            return 0;
        int status;
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            n->pid = 0;
            char tail[1500];
            log_tail(n, tail, sizeof(tail));
            snprintf(why, why_size, "node %d exited before it was ready; its log ends:\n%s",
                     i + 1, tail);
            return -1;
        }
        if (ut_now_ms() > end) {
            char tail[1500];
            log_tail(n, tail, sizeof(tail));
            snprintf(why, why_size, "node %d not ready after %d ms (log %s) ending:\n%s", i + 1,
                     timeout_ms, n->log, tail);
            return -1;
        }
        usleep(50 * 1000);
    }
    snprintf(why, why_size, "stopped by a signal");
    return -1;
}

int ks_node_stop(ks_cluster_t *c, int i, int timeout_ms)
{
    ks_node_t *n = &c->n[i];
    if (n->pid <= 0)
        return 0;
    int rc = ut_stop(n->pid, SIGTERM, timeout_ms);
    n->pid = 0;
    return rc;
}

/* Node i's view of the table; 1 whole, 0 not (seen says why), -1 no answer. */
static int view_whole(ks_cluster_t *c, int i, int owners, char *seen, size_t seen_size)
{
    char path[128];
    snprintf(path, sizeof(path), "/cluster/shards/%s", c->app);
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    int st = ut_http(KS_HOST, c->n[i].mport, "GET", path, &b, 2000);
    cJSON *j = st == 200 ? cJSON_Parse(b.data) : NULL;
    ukko_buf_destroy(&b);
    if (!j) {
        snprintf(seen, seen_size, "node %d: %s answered %d", i + 1, path, st);
        return -1;
    }
    int P = c->partitions, listed[KB_MAX_PARTS] = {0}, n_owners = 0, fewest = P, most = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "clusterRegions"))
    {
        int n = 0;
        const cJSON *sid;
        cJSON_ArrayForEach(sid, cJSON_GetObjectItem(r, "shards"))
        {
            const char *v = cJSON_GetStringValue(sid);
            int s = v ? atoi(v) : -1;
            if (s >= 0 && s < P)
                listed[s]++;
            n++;
        }
        n_owners += n > 0;
        fewest = n > 0 && n < fewest ? n : fewest;
        most = n > most ? n : most;
    }
    int whole = cJSON_GetArraySize(cJSON_GetObjectItem(j, "handingOff")) == 0 &&
                cJSON_GetArraySize(cJSON_GetObjectItem(j, "unallocated")) == 0 &&
                n_owners == owners && fewest >= P / owners && most <= (P + owners - 1) / owners;
    for (int s = 0; s < P; s++)
        whole = whole && listed[s] == 1;
    if (!whole)
        snprintf(seen, seen_size, "node %d sees %d owners (want %d) holding %d to %d shards",
                 i + 1, n_owners, owners, fewest, most);
    cJSON_Delete(j);
    return whole;
}

bool ks_table_whole(ks_cluster_t *c, int owners, char *seen, size_t seen_size)
{
    for (int i = 0; i < KS_MAX_NODES; i++)
        if (c->n[i].pid > 0 && view_whole(c, i, owners, seen, seen_size) != 1)
            return false;
    return true;
}

/* The samples of family in a Prometheus text body whose labels contain label. */
static double metric_in(const char *body, const char *family, const char *label)
{
    double sum = 0;
    size_t flen = strlen(family);
    for (const char *line = body; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > flen && !strncmp(line, family, flen) &&
            (line[flen] == '{' || line[flen] == ' ')) {
            const char *close = memchr(line, '}', len);
            const char *val = close ? close + 1 : line + flen;
            char labels[512] = "";
            if (close)
                snprintf(labels, sizeof(labels), "%.*s", (int)(close - line), line);
            if (!label || strstr(labels, label))
                sum += strtod(val, NULL);
        }
        line = eol ? eol + 1 : NULL;
    }
    return sum;
}

double ks_metric_sum(ks_cluster_t *c, const char *family, const char *label)
{
    double sum = 0;
    for (int i = 0; i < KS_MAX_NODES; i++) {
        if (c->n[i].pid <= 0)
            continue;
        ukko_buf_t b;
        ukko_buf_init(&b, 1 << 16);
        int st = ut_http(KS_HOST, c->n[i].mport, "GET", "/metrics", &b, 2000);
        if (st == 200 && b.data)
            sum += metric_in(b.data, family, label);
        ukko_buf_destroy(&b);
        if (st != 200)
            return -1;
    }
    return sum;
}

int ks_cluster_up(ks_cluster_t *c, int n, char *why, size_t why_size)
{
    for (int i = 0; i < n; i++)
        if (ks_node_start(c, i, why, why_size) < 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (ks_node_ready(c, i, 60000, why, why_size) < 0)
            return -1;
    char seen[256] = "", label[96];
    snprintf(label, sizeof(label), "type=\"%s\"", c->app);
    for (int64_t end = ut_now_ms() + 60000; !kb_stop; usleep(50 * 1000)) {
        /* Whole, and every partition assigned by its owner's consumer. */
        if (ks_table_whole(c, n, seen, sizeof(seen))) {
            double parts = ks_metric_sum(c, "ukko_kafka_partitions", label);
            if (parts == c->partitions)
                return 0;
            snprintf(seen, sizeof(seen), "%.0f of %d partitions assigned", parts, c->partitions);
        }
        if (ut_now_ms() > end) {
            snprintf(why, why_size, "the shards of %s never sat on %d nodes: %s (logs in %s)",
                     c->app, n, seen, c->dir);
            return -1;
        }
    }
    snprintf(why, why_size, "stopped by a signal");
    return -1;
}

long ks_node_mem_kib(const ks_cluster_t *c, int i, const char *field)
{
    char path[64], line[256];
    long v = -1;
    size_t flen = strlen(field);
    if (c->n[i].pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)c->n[i].pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, flen) && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

double ks_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command's ")": state is field 3, utime 14, stime 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int ks_cluster_stop(ks_cluster_t *c, int timeout_ms)
{
    int bad = 0;
    for (int i = KS_MAX_NODES - 1; i >= 0; i--)
        if (c->n[i].pid > 0) {
            int rc = ks_node_stop(c, i, timeout_ms);
            if (rc != 0) {
                kb_say("node %d stopped with %d after SIGTERM (log %s)", i + 1, rc, c->n[i].log);
                bad++;
            }
        }
    return bad;
}

void ks_cluster_destroy(ks_cluster_t *c)
{
    for (int i = 0; i < KS_MAX_NODES; i++)
        if (c->n[i].pid > 0) {
            kill(c->n[i].pid, SIGKILL);
            while (waitpid(c->n[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
            c->n[i].pid = 0;
        }
    if (c->dir) {
        if (c->keep)
            kb_say("the nodes' logs are kept in %s", c->dir);
        else
            ut_rmtree(c->dir);
        free(c->dir);
        c->dir = NULL;
    }
}

/* ---- topics and offsets ---------------------------------------------------------- */

/* Runs one admin request on q and returns its result event (the caller destroys
 * it), or NULL after 30 s. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q)
{
    return rd_kafka_queue_poll(q, 30000);
}

/* Whether topic is in the broker's metadata. 1, 0, or -1 (no answer). */
static int topic_exists(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000))
        return -1;
    int found = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        found |= !strcmp(md->topics[i].topic, topic);
    rd_kafka_metadata_destroy(md);
    return found;
}

int ks_topics_reset(const char *bootstrap, int partitions, char *why, size_t why_size)
{
    static const char *const topics[] = {KS_IN, KS_OUT, KS_DLQ};
    static const char *const groups[] = {"orders", "sink"};
    char err[256];
    int rc = -1;
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, NULL, why, why_size);
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)) : NULL;
    if (!rk) {
        if (conf) {
            snprintf(why, why_size, "rd_kafka_new (admin): %s", err);
            rd_kafka_conf_destroy(conf);
        }
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *dt[3];
    for (int i = 0; i < 3; i++)
        dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_DeleteTopics(rk, dt, 3, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q);  /* unknown topics are fine: a first run */
    rd_kafka_DeleteTopic_destroy_array(dt, 3);
    if (ev)
        rd_kafka_event_destroy(ev);
    /* The groups' offsets go with their topics; deleting the (memberless) groups
     * too makes sure a node starts from the beginning of the new topic. */
    rd_kafka_DeleteGroup_t *dg[2];
    for (int i = 0; i < 2; i++)
        dg[i] = rd_kafka_DeleteGroup_new(groups[i]);
    rd_kafka_DeleteGroups(rk, dg, 2, NULL, q);
    ev = admin_wait(q);
    rd_kafka_DeleteGroup_destroy_array(dg, 2);
    if (ev)
        rd_kafka_event_destroy(ev);
    for (int64_t end = kb_now_us() + 60000000;; usleep(100 * 1000)) {
        int left = 0;
        for (int i = 0; i < 3; i++)
            left += topic_exists(rk, topics[i]) != 0;
        if (!left)
            break;
        if (kb_stop || kb_now_us() > end) {
            snprintf(why, why_size, "topics %s, %s, %s still listed 60 s after their deletion",
                     topics[0], topics[1], topics[2]);
            goto out;
        }
    }
    /* A topic just deleted may be refused for a moment while the broker forgets it:
     * try again for a while. */
    for (int i = 0; i < 3; i++)
        for (int64_t end = kb_now_us() + 60000000;;) {
            if (kb_topic_create(bootstrap, topics[i], i == 2 ? 1 : partitions, why, why_size) == 0)
                break;
            if (kb_stop || kb_now_us() > end)
                goto out;
            usleep(500 * 1000);
        }
    rc = 0;
out:
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

rd_kafka_t *ks_group_handle(const char *bootstrap, const char *group, char *why, size_t why_size)
{
    const char *const kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    char err[256];
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, kv, why, why_size);
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)) : NULL;
    if (!rk && conf) {
        snprintf(why, why_size, "rd_kafka_new (offsets of %s): %s", group, err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int ks_committed(rd_kafka_t *rk, const char *topic, int partitions, int64_t *out)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    for (int p = 0; p < partitions; p++)
        out[p] = e || l->elems[p].err ? -1 : l->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return e ? -1 : 0;
}

int ks_ends(rd_kafka_t *rk, const char *topic, int partitions, int64_t *out)
{
    for (int p = 0; p < partitions; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
            return -1;
        out[p] = hi;
    }
    return 0;
}
