/* streams.c: the Kafka side of a node: its topic-fed entity types (each a
 * source), their registration with sharding and the shard hooks that start
 * and hand off partitions, the producer, the stop task. Loop thread (new,
 * add_type, start and the hooks); free after the loop ended. */
#include "streams_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *streams__xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        ukko_log(UKKO_LOG_ERROR, "streams", "out of memory (%zu x %zu bytes): aborting", n, size);
        abort();
    }
    return p;
}

char *streams__xstrdup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *p = streams__xcalloc(1, n);
    memcpy(p, s ? s : "", n);
    return p;
}

static streams__source_t *find_source(ukko_streams_t *st, const char *type)
{
    for (streams__source_t *s = st->sources; s; s = s->next)
        if (!strcmp(s->type, type))
            return s;
    return NULL;
}

static int hook_start(void *ud, const char *type, int32_t shard)
{
    ukko_streams_t *st = ud;
    streams__source_t *src = find_source(st, type);
    if (!src || !src->rk)
        return UKKO_ENOENT;
    return streams__source_shard_start(src, shard);
}

static void hook_stop(void *ud, const char *type, int32_t shard, bool at_once,
                      ukko_shard_stopped_fn done, void *done_arg)
{
    ukko_streams_t *st = ud;
    streams__source_t *src = find_source(st, type);
    if (!src || !src->rk) {
        if (done)
            done(done_arg);
        return;
    }
    streams__source_shard_stop(src, shard, at_once, done, done_arg);
}

int streams__new_with(ukko_node_t *node, struct ev_loop *loop, ukko_sharding_t *sharding,
                      const streams__shard_api_t *api, const ukko_streams_config_t *sc,
                      ukko_streams_t **out)
{
    *out = NULL;
    char err[512];
    if (streams__config_validate(sc, err, sizeof(err)) < 0) {
        ukko_log(UKKO_LOG_ERROR, "config", "%s", err);
        return UKKO_EINVAL;
    }
    /* The properties were checked at load; a conf built now catches what a
     * check cannot (bootstrap servers librdkafka refuses). */
    rd_kafka_conf_t *conf = streams__conf_new(sc, err, sizeof(err));
    if (!conf) {
        ukko_log(UKKO_LOG_ERROR, "config", "%s", err);
        return UKKO_EINVAL;
    }
    rd_kafka_conf_destroy(conf);
    ukko_streams_t *st = streams__xcalloc(1, sizeof(*st));
    st->node = node;
    st->loop = loop;
    st->sharding = sharding;
    st->api = api;
    st->cfg = sc;
    st->pqfd[0] = st->pqfd[1] = -1;
    *out = st;
    return 0;
}

int ukko_streams_add_type(ukko_streams_t *st, const ukko_entity_type_t *t, const char *topic)
{
    if (!t || !t->name || !*t->name || !t->handler || !topic || !*topic || t->shards != 0) {
        ukko_log(UKKO_LOG_ERROR, "streams",
                 "entity type %s: a topic-fed type needs a name, a handler, a topic and "
                 "shards = 0 (the topic's partitions set them)",
                 t && t->name ? t->name : "(no name)");
        return UKKO_EINVAL;
    }
    if (st->started) {
        ukko_log(UKKO_LOG_ERROR, "streams", "entity type %s added after the start: add it before",
                 t->name);
        return UKKO_EINVAL;
    }
    if (find_source(st, t->name)) {
        ukko_log(UKKO_LOG_ERROR, "streams", "entity type %s is declared twice", t->name);
        return UKKO_EINVAL;
    }
    if (!st->cfg->bootstrap_servers || !*st->cfg->bootstrap_servers) {
        ukko_log(UKKO_LOG_ERROR, "config",
                 "entity type %s reads topic %s but kafka.bootstrap-servers is empty: set it "
                 "(UKKO_KAFKA_BOOTSTRAP_SERVERS=host:port)",
                 t->name, topic);
        return UKKO_EINVAL;
    }
    streams__source_t *src;
    int rc = streams__source_new(st, t, topic, &src);
    if (rc < 0) {
        ukko_log(UKKO_LOG_ERROR, "streams", "entity type %s: at most %d topic-fed types per node",
                 t->name, STREAMS__MAX_SLOTS);
        return rc;
    }
    /* Sharding calls our trampoline, which serves the application's handler. */
    ukko_entity_type_t reg = *t;
    reg.handler = streams__slot_handler(src->slot);
    ukko_shard_hooks_t hooks = {.start = hook_start, .stop = hook_stop, .ud = st};
    rc = st->api->register_type(st->sharding, &reg, &hooks);
    if (rc < 0) {
        ukko_log(UKKO_LOG_ERROR, "streams", "sharding refused entity type %s: %s", t->name,
                 ukko_strerror(rc));
        streams__source_free(src);
        return rc;
    }
    src->next = st->sources;
    st->sources = src;
    st->nsources++;
    return 0;
}

int ukko_streams_start(ukko_streams_t *st)
{
    if (st->started)
        return 0;
    st->started = true;
    if (!st->sources)
        return 0; /* no topic-fed type: no Kafka client at all */
    int rc = streams__producer_start(st);
    for (streams__source_t *s = st->sources; s && rc == 0; s = s->next)
        rc = streams__source_start(s);
    if (rc == 0 && st->node)
        rc = ukko_node_add_stop_task(st->node, UKKO_PHASE_CLUSTER_EXITING_DONE, "kafka-commit",
                                     ukko_streams_stop_task, st);
    return rc;
}

void ukko_streams_stop_task(ukko_stop_task_t *task, void *ud)
{
    ukko_streams_t *st = ud;
    st->stopping = true;
    for (streams__source_t *s = st->sources; s; s = s->next)
        streams__source_commit_all(s);
    ukko_stop_task_done(task);
}

void ukko_streams_free(ukko_streams_t *st)
{
    if (!st)
        return;
    st->stopping = true;
    /* The producer first: records it still confirms acknowledge their
     * inputs, which the consumers' last commits then include. */
    streams__producer_stop(st);
    while (st->sources) {
        streams__source_t *s = st->sources;
        st->sources = s->next;
        streams__source_free(s);
    }
    free(st);
}
