/* feed_support.c: see feed_support.h. Single-threaded but for the stand-in
 * sharding's workers, which run the handlers. */
#include "feed_support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

void feed_open(feed_t *f, const char *bootstrap, const char *const *env)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->bootstrap, sizeof(f->bootstrap), "%s", bootstrap);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->cfg = ukko_config_new();
    cr_assert_eq(ukko_streams_config_register(f->cfg, &f->sc), 0);
    char boot[600];
    snprintf(boot, sizeof(boot), "UKKO_KAFKA_BOOTSTRAP_SERVERS=%s", bootstrap);
    char *envp[40];
    size_t n = 0;
    envp[n++] = boot;
    for (size_t i = 0; env && env[i] && n < 39; i++)
        envp[n++] = (char *)env[i];
    envp[n] = NULL;
    int errors = ukko_config_load(f->cfg, NULL, envp);
    cr_assert_eq(errors, 0, "config: %s", errors ? ukko_config_error(f->cfg, 0) : "");
    f->sh = fs_new(f->loop, 4, "test-node:7355");
    cr_assert_eq(streams__new_with(NULL, f->loop, f->sh, &fs_api, &f->sc, &f->st), 0);
    /* Wakes the loop now and then so deadlines are seen. */
    ev_timer_init(&f->tick, on_tick, 0.05, 0.05);
    ev_timer_start(f->loop, &f->tick);
}

void feed_add(feed_t *f, const ukko_entity_type_t *t, const char *topic)
{
    cr_assert_eq(ukko_streams_add_type(f->st, t, topic), 0, "adding type %s", t->name);
}

static bool shards_known(feed_t *f, void *arg)
{
    return fs_shards(f->sh, arg) > 0;
}

void feed_start(feed_t *f, const char *type)
{
    cr_assert_eq(ukko_streams_start(f->st), 0, "streams start");
    feed_run_until(f, shards_known, (void *)type, 30000, "the topic's partition count");
    cr_assert_eq(fs_start_shards(f->sh, type), 0, "starting the shards of %s", type);
}

void feed_run_until(feed_t *f, bool (*pred)(feed_t *f, void *arg), void *arg, int timeout_ms,
                    const char *what)
{
    int64_t deadline = ukko_now_ms() + timeout_ms;
    while (!pred(f, arg)) {
        if (ukko_now_ms() > deadline)
            cr_assert_fail("waited %d ms for %s", timeout_ms, what);
        ev_run(f->loop, EVRUN_ONCE);
    }
}

typedef struct stop_wait {
    bool done[1024];
    int n;
} stop_wait_t;

static bool all_stopped(feed_t *f, void *arg)
{
    (void)f;
    stop_wait_t *w = arg;
    for (int i = 0; i < w->n; i++)
        if (!w->done[i])
            return false;
    return true;
}

void feed_stop_shards(feed_t *f, const char *type, bool at_once, int timeout_ms)
{
    static stop_wait_t w;
    memset(&w, 0, sizeof(w));
    w.n = fs_shards(f->sh, type);
    cr_assert_leq(w.n, 1024);
    for (int i = 0; i < w.n; i++)
        fs_stop_shard(f->sh, type, i, at_once, &w.done[i]);
    feed_run_until(f, all_stopped, &w, timeout_ms, "every shard's stopped callback");
}

void feed_close(feed_t *f)
{
    fs_stop(f->sh);
    ukko_streams_free(f->st);
    fs_free(f->sh);
    ev_timer_stop(f->loop, &f->tick);
    ukko_config_free(f->cfg);
    ev_loop_destroy(f->loop);
    memset(f, 0, sizeof(*f));
}

streams__source_t *feed_source(feed_t *f, const char *type)
{
    for (streams__source_t *s = f->st->sources; s; s = s->next)
        if (!strcmp(s->type, type))
            return s;
    return NULL;
}

uint64_t feed_done(feed_t *f, const char *type)
{
    streams__source_t *s = feed_source(f, type);
    uint64_t n = 0;
    for (streams__part_t *p = s ? s->parts : NULL; p; p = p->next)
        n += p->processed + p->dead_letters;
    return n;
}

bool feed_committed(feed_t *f, const char *type, const int64_t *ends, int n)
{
    streams__source_t *s = feed_source(f, type);
    for (int p = 0; p < n; p++) {
        if (ends[p] == 0)
            continue; /* nothing in it */
        bool found = false;
        for (streams__part_t *x = s ? s->parts : NULL; x; x = x->next)
            if (x->partition == p && x->state != STREAMS__PART_GONE) {
                found = true;
                if (x->cp.committed != ends[p])
                    return false;
            }
        if (!found)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ kcat */

void kc_produce(const char *bootstrap, const char *topic, const char *lines)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "kcat -P -b '%s' -t '%s' -K '\t' -X partitioner=murmur2_random -X linger.ms=20",
             bootstrap, topic);
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    int rc = ut_run(cmd, lines, &out);
    cr_assert_eq(rc, 0, "kcat producing to %s: exit %d: %s", topic, rc, out.data ? out.data : "");
    ukko_buf_destroy(&out);
}

size_t kc_read(const char *bootstrap, const char *topic, krec_t **out)
{
    char cmd[1024];
    /* One record per line; values and headers carry no tab or newline. */
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b '%s' -t '%s' -o beginning -e -q -f '%%p\\t%%o\\t%%k\\t%%h\\t%%s\\n' "
             "2>/dev/null",
             bootstrap, topic);
    ukko_buf_t buf;
    ukko_buf_init(&buf, 0);
    int rc = ut_run(cmd, NULL, &buf);
    cr_assert_eq(rc, 0, "kcat reading %s: exit %d", topic, rc);
    size_t cap = 1024, n = 0;
    krec_t *r = calloc(cap, sizeof(*r));
    char *save = NULL;
    for (char *line = strtok_r(buf.data ? buf.data : (char *)"", "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[5] = {0};
        char *p = line;
        for (int i = 0; i < 5; i++) {
            f[i] = p;
            char *tab = i < 4 ? strchr(p, '\t') : NULL;
            if (i < 4 && !tab)
                break;
            if (tab) {
                *tab = '\0';
                p = tab + 1;
            }
        }
        if (!f[4])
            continue;
        if (n == cap)
            r = realloc(r, (cap *= 2) * sizeof(*r));
        r[n].partition = atoi(f[0]);
        r[n].offset = atoll(f[1]);
        snprintf(r[n].key, sizeof(r[n].key), "%s", f[2]);
        r[n].headers = strdup(f[3]);
        r[n].value = strdup(f[4]);
        n++;
    }
    ukko_buf_destroy(&buf);
    *out = r;
    return n;
}

void kc_free(krec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].value);
        free(r[i].headers);
    }
    free(r);
}

void kc_ends(const krec_t *r, size_t n, int64_t *ends, int partitions)
{
    for (int p = 0; p < partitions; p++)
        ends[p] = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].partition < partitions && r[i].offset + 1 > ends[r[i].partition])
            ends[r[i].partition] = r[i].offset + 1;
}

/* ------------------------------------------------------------ tally */

int tally_handler(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    const tally_cfg_t *c = ukko_entity_ud(ctx);
    if (m->len >= 6 && memmem(m->data, m->len, "poison", 6)) {
        ukko_stream_fail_reason(ctx, "a poison record (the test's)");
        return UKKO_EINVAL;
    }
    if (c->sleep_us)
        usleep((useconds_t)c->sleep_us);
    int64_t *count = state;
    ukko_stream_origin_t o;
    if (ukko_stream_origin(ctx, m, &o) < 0)
        return UKKO_EINVAL;
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "{\"count\":%lld,\"source_partition\":%d,\"source_offset\":%lld,\"attempt\":%d}",
                     (long long)(*count + 1), (int)o.partition, (long long)o.offset, o.attempt);
    int rc = ukko_stream_produce(ctx, c->out, m->entity_id, m->entity_id_len, buf, (size_t)n, NULL);
    if (rc == 0)
        (*count)++;
    return rc;
}

/* ------------------------------------------------------------ checks */

typedef struct kv {
    char key[64];
    long long last;
    bool used;
} kv_t;

static kv_t *kv_get(kv_t *t, size_t cap, const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (size_t i = h % cap;; i = (i + 1) % cap) {
        if (!t[i].used) {
            t[i].used = true;
            snprintf(t[i].key, sizeof(t[i].key), "%s", key);
            t[i].last = 0;
            return &t[i];
        }
        if (!strcmp(t[i].key, key))
            return &t[i];
    }
}

void check_complete(const krec_t *in, size_t nin, const krec_t *out, size_t nout, bool exact,
                    bool ordered)
{
    int maxp = 0;
    long long maxo = 0;
    for (size_t i = 0; i < nin; i++) {
        if (in[i].partition > maxp)
            maxp = in[i].partition;
        if (in[i].offset > maxo)
            maxo = in[i].offset;
    }
    size_t width = (size_t)maxo + 1;
    unsigned char *seen = calloc((size_t)(maxp + 1) * width, 1);
    kv_t *counts = calloc(nout * 2 + 16, sizeof(*counts));
    size_t ccap = nout * 2 + 16;
    for (size_t i = 0; i < nout; i++) {
        cJSON *v = cJSON_Parse(out[i].value);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(v, "source_partition");
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(v, "source_offset");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "count");
        cr_assert(cJSON_IsNumber(sp) && cJSON_IsNumber(so) && cJSON_IsNumber(c),
                  "output record %d/%lld is not what the handler writes: %s", out[i].partition,
                  out[i].offset, out[i].value);
        int p = sp->valueint;
        long long o = (long long)so->valuedouble;
        if (p >= 0 && p <= maxp && o >= 0 && o <= maxo) {
            unsigned char *s = &seen[(size_t)p * width + (size_t)o];
            cr_assert(!exact || *s == 0,
                      "input %d/%lld was processed twice (output %d/%lld): a duplicate", p, o,
                      out[i].partition, out[i].offset);
            if (*s < 255)
                (*s)++;
        }
        kv_t *k = kv_get(counts, ccap, out[i].key);
        long long cnt = (long long)c->valuedouble;
        cr_assert(!ordered || cnt > k->last,
                     "key %s: count %lld after %lld in output %d/%lld: per-entity order broken",
                     out[i].key, cnt, k->last, out[i].partition, out[i].offset);
        k->last = cnt;
        cJSON_Delete(v);
    }
    size_t missing = 0;
    const krec_t *first = NULL;
    for (size_t i = 0; i < nin; i++)
        if (!seen[(size_t)in[i].partition * width + (size_t)in[i].offset]) {
            if (!missing)
                first = &in[i];
            missing++;
        }
    cr_assert_eq(missing, 0, "%zu of %zu input records never reached the output (first: %d/%lld)",
                 missing, nin, first ? first->partition : -1, first ? first->offset : -1LL);
    free(seen);
    free(counts);
}
