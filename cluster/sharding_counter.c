/* sharding_counter.c: `ukko run --app counter`, a built-in application for
 * trying sharding and for its multi-process tests: entity type "counter"
 * (12 shards); POST /counter/send?prefix=P&ids=K&n=N tells entities P0 ..
 * P(K-1) N rounds of numbered messages from this node; every entity
 * records, per sender, what it received in a table of this process that
 * GET /counter/stats shows: count, first and last number, gaps, and "bad"
 * (a number at or below the last one: a duplicate or a reordering); with
 * relay=1 each entity tells the message on to entity "<id>.r" from its
 * handler, as entities talking to entities do. Routes
 * on the loop thread; handlers on dispatcher threads, meeting the routes
 * only at the table's mutex. */
#include "sharding_runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNT_SHARDS 12
#define CNT_MAX_ROWS 65536

typedef struct row {
    char id[64];
    char from[64];
    uint64_t count, first, last, gaps, bad;
} row_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static row_t *rows;
static size_t nrows, rowcap;
static ukko_host_t *the_host;
static char self_name[80];

/* Next number per entity id this node sends (loop thread). */
typedef struct next {
    char id[64];
    uint64_t seq;
} next_t;
static next_t *nexts;
static size_t nnexts, nextcap;

static int counter_handle(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    (void)state;
    size_t idlen;
    const char *id = ukko_entity_id(ctx, &idlen);
    /* payload: "<sender> <number>" */
    char buf[160];
    size_t n = m->len < sizeof(buf) - 1 ? m->len : sizeof(buf) - 1;
    memcpy(buf, m->data, n);
    buf[n] = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp)
        return UKKO_EINVAL;
    *sp = '\0';
    uint64_t seq = strtoull(sp + 1, NULL, 10);
    pthread_mutex_lock(&mu);
    row_t *r = NULL;
    for (size_t i = 0; i < nrows && !r; i++)
        if (strlen(rows[i].id) == idlen && !memcmp(rows[i].id, id, idlen) &&
            !strcmp(rows[i].from, buf))
            r = &rows[i];
    if (!r && nrows < CNT_MAX_ROWS) {
        if (nrows == rowcap) {
            size_t cap = rowcap ? rowcap * 2 : 256;
            row_t *nr = realloc(rows, cap * sizeof(*nr));
            if (nr) {
                rows = nr;
                rowcap = cap;
            }
        }
        if (nrows < rowcap) {
            r = &rows[nrows++];
            memset(r, 0, sizeof(*r));
            snprintf(r->id, sizeof(r->id), "%.*s", (int)(idlen < 63 ? idlen : 63), id);
            snprintf(r->from, sizeof(r->from), "%.63s", buf);
            r->first = seq;
        }
    }
    if (r) {
        if (r->count && seq <= r->last)
            r->bad++;
        else if (r->count && seq > r->last + 1)
            r->gaps++;
        if (!r->count || seq > r->last)
            r->last = seq;
        r->count++;
    }
    pthread_mutex_unlock(&mu);
    if (m->type == 2) {
        /* relay: the same message to entity "<id>.r", told from this
         * handler's thread (queued to the loop thread) */
        char rid[80];
        int n2 = snprintf(rid, sizeof(rid), "%.*s.r", (int)(idlen < 60 ? idlen : 60), id);
        ukko_sharding_t *s = ukko_cluster_sharding(ukko_host_module(the_host, "cluster"));
        if (s && ukko_entity_tell(s, "counter", rid, (size_t)n2, 1, m->data, m->len) < 0)
            return UKKO_EAGAIN;
    }
    return 0;
}

static const ukko_entity_type_t counter_type = {
    .name = "counter",
    .shards = CNT_SHARDS,
    .state_size = sizeof(uint64_t),
    .handler = counter_handle,
};

static long query_num(const char *q, const char *key, long def)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=')
            return strtol(p + kl + 1, NULL, 10);
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return def;
}

static void query_str(const char *q, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t n = strcspn(v, "&");
            snprintf(out, outlen, "%.*s", (int)n, v);
            return;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
}

static uint64_t *next_of(const char *id)
{
    for (size_t i = 0; i < nnexts; i++)
        if (!strcmp(nexts[i].id, id))
            return &nexts[i].seq;
    if (nnexts == nextcap) {
        size_t cap = nextcap ? nextcap * 2 : 256;
        next_t *nn = realloc(nexts, cap * sizeof(*nn));
        if (!nn)
            return NULL;
        nexts = nn;
        nextcap = cap;
    }
    next_t *x = &nexts[nnexts++];
    snprintf(x->id, sizeof(x->id), "%s", id);
    x->seq = 0;
    return &x->seq;
}

static void route_send(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)ud;
    ukko_sharding_t *s = ukko_cluster_sharding(ukko_host_module(the_host, "cluster"));
    if (!s) {
        ukko_http_reply(res, 503, "no sharding on this node\n");
        return;
    }
    char prefix[32] = "e";
    query_str(req->query, "prefix", prefix, sizeof(prefix));
    long ids = query_num(req->query, "ids", 1), n = query_num(req->query, "n", 1);
    uint32_t type = query_num(req->query, "relay", 0) ? 2 : 1;
    long sent = 0;
    for (long round = 0; round < n; round++)
        for (long i = 0; i < ids; i++) {
            char id[64], msg[160];
            snprintf(id, sizeof(id), "%s%ld", prefix, i);
            uint64_t *seq = next_of(id);
            if (!seq) {
                ukko_http_reply(res, 500, "out of memory\n");
                return;
            }
            int len = snprintf(msg, sizeof(msg), "%s %llu", self_name,
                               (unsigned long long)(*seq + 1));
            int rc = ukko_entity_tell(s, "counter", id, strlen(id), type, msg, (size_t)len);
            if (rc < 0) {
                ukko_http_reply(res, 503, "sent %ld; then %s\n", sent, ukko_strerror(rc));
                return;
            }
            (*seq)++;
            sent++;
        }
    ukko_http_reply(res, 200, "sent %ld\n", sent);
}

static cJSON *stats_json(void)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "node", self_name);
    cJSON *a = cJSON_AddArrayToObject(root, "rows");
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrows; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", rows[i].id);
        cJSON_AddStringToObject(o, "from", rows[i].from);
        cJSON_AddNumberToObject(o, "count", (double)rows[i].count);
        cJSON_AddNumberToObject(o, "first", (double)rows[i].first);
        cJSON_AddNumberToObject(o, "last", (double)rows[i].last);
        cJSON_AddNumberToObject(o, "gaps", (double)rows[i].gaps);
        cJSON_AddNumberToObject(o, "bad", (double)rows[i].bad);
        cJSON_AddItemToArray(a, o);
    }
    pthread_mutex_unlock(&mu);
    /* what this node told each entity (loop thread: the routes and the stop) */
    cJSON *sent = cJSON_AddObjectToObject(root, "sent");
    for (size_t i = 0; i < nnexts; i++)
        cJSON_AddNumberToObject(sent, nexts[i].id, (double)nexts[i].seq);
    return root;
}

static void route_stats(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    (void)ud;
    cJSON *root = stats_json();
    ukko_http_reply_json(res, 200, root);
    cJSON_Delete(root);
}

/* With COUNTER_STATS_FILE set, the stats are written there once the
 * shards are handed off and the entities drained: how a test sees what a
 * node that left had received. */
static void task_write_stats(ukko_stop_task_t *task, void *ud)
{
    (void)ud;
    const char *path = getenv("COUNTER_STATS_FILE");
    cJSON *root = stats_json();
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    FILE *f = path && text ? fopen(path, "w") : NULL;
    if (f) {
        fputs(text, f);
        fclose(f);
    } else if (path) {
        ukko_logf(UKKO_LOG_WARN, "counter", UKKO_FIELDS(UKKO_FS("path", path)),
                  "cannot write the counter stats to %s", path);
    }
    free(text);
    cJSON_Delete(root);
    ukko_stop_task_done(task);
}

static int counter_init(ukko_host_t *host, void *ud)
{
    (void)ud;
    the_host = host;
    const ukko_cluster_config_t *cc = ukko_host_settings(host, "cluster");
    if (cc)
        snprintf(self_name, sizeof(self_name), "%s:%lld",
                 cc->hostname && *cc->hostname ? cc->hostname : "?", (long long)cc->port);
    ukko_http_server_t *srv = ukko_node_http(ukko_host_node(host));
    int rc = ukko_host_add_hook(host, UKKO_HOOK_ENTITY_TYPE, &counter_type);
    if (rc == 0)
        rc = ukko_http_route(srv, "POST", "/counter/send", route_send, NULL);
    if (rc == 0)
        rc = ukko_http_route(srv, "GET", "/counter/stats", route_stats, NULL);
    if (rc == 0 && getenv("COUNTER_STATS_FILE"))
        rc = ukko_node_add_stop_task(ukko_host_node(host), UKKO_PHASE_ACTOR_SYSTEM_TERMINATE,
                                     "counter-stats", task_write_stats, NULL);
    return rc;
}

const ukko_app_t ukko_sharding_counter_app = {
    .name = "counter",
    .about = "sharded counters for trying cluster sharding (POST /counter/send, GET "
             "/counter/stats)",
    .init = counter_init,
    .ud = NULL,
};
