/* clicks.c: an example ukko application, built as a shared library and run
 * with `ukko run --app path/to/libukko_example_clicks.so`. Topic `clicks`
 * holds page views keyed by user id (the value is the page's path); an
 * entity per user counts that user's views and, for each one, produces
 * {"user", "views", "page", "from"} to `clicks-per-user`, keyed by user.
 *
 * What an application needs (docs/streams.md, "Applications"):
 *   - the headers ukko.h (the node) and streams.h (Kafka-fed entities);
 *   - a handler per entity type: runs on a dispatcher thread, one record at
 *     a time per entity, returns 0 once its work is done (what it produced
 *     with ukko_stream_produce counts only once the broker confirmed it),
 *     or < 0 to fail the record (retried, then dead-lettered);
 *   - the entry point: `const ukko_app_t ukko_app`, whose init offers the
 *     application's entity types to the node. */
#include "streams.h"
#include "ukko.h"

#include <stdio.h>
#include <string.h>

typedef struct user {
    long long views;
} user_t;

static int on_click(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    user_t *u = state;
    if (m->len == 0 || m->len > 512 || ((const char *)m->data)[0] != '/') {
        ukko_stream_fail_reason(ctx, "a click's value is a page path starting with '/'");
        return UKKO_EINVAL;
    }
    ukko_stream_origin_t o;
    (void)ukko_stream_origin(ctx, m, &o);
    /* JSON-escape the id and the path through cJSON (ukko's JSON library). */
    cJSON *out = cJSON_CreateObject();
    char user[256];
    snprintf(user, sizeof(user), "%.*s", (int)(m->entity_id_len < 255 ? m->entity_id_len : 255),
             m->entity_id);
    char page[520];
    snprintf(page, sizeof(page), "%.*s", (int)m->len, (const char *)m->data);
    cJSON_AddStringToObject(out, "user", user);
    cJSON_AddNumberToObject(out, "views", (double)(u->views + 1));
    cJSON_AddStringToObject(out, "page", page);
    char from[64];
    snprintf(from, sizeof(from), "%d/%lld", (int)o.partition, (long long)o.offset);
    cJSON_AddStringToObject(out, "from", from);
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (!text)
        return UKKO_ENOMEM;
    int rc = ukko_stream_produce(ctx, "clicks-per-user", m->entity_id, m->entity_id_len, text,
                                 strlen(text), NULL);
    cJSON_free(text);
    if (rc == 0)
        u->views++;
    return rc;
}

static const ukko_stream_type_t clicks = {
    .type = {.name = "clicks", .state_size = sizeof(user_t), .handler = on_click},
    .topic = "clicks",
};

static int init(ukko_host_t *host, void *ud)
{
    (void)ud;
    return ukko_host_add_hook(host, UKKO_HOOK_STREAM_TYPE, &clicks);
}

/* The entry point `ukko run --app libukko_example_clicks.so` looks up. */
const ukko_app_t ukko_app = {
    .name = "clicks",
    .about = "example: page views per user, from topic clicks to clicks-per-user",
    .init = init,
};
