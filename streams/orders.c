/* orders.c: the built-in demo application `ukko run --app orders`: an entity
 * per customer (the key of topic `orders`) keeps a running total of its
 * orders ({"order_id", "amount"}) and, for each, produces one record to
 * `orders-processed`, keyed by customer, saying where the order came from
 * and which node handled it. Handlers run on dispatcher threads, one
 * message at a time per customer; init on the loop thread. A value that is
 * not such JSON fails its record (retried, then dead-lettered to
 * orders.dlq). */
#include "streams.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ORDERS_IN "orders"
#define ORDERS_OUT "orders-processed"

typedef struct customer {
    int64_t count;
    double total;
} customer_t;

static int on_order(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    customer_t *c = state;
    cJSON *order = cJSON_ParseWithLength(m->data, m->len);
    const cJSON *amount = cJSON_GetObjectItemCaseSensitive(order, "amount");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(order, "order_id");
    if (!cJSON_IsNumber(amount) || !isfinite(amount->valuedouble)) {
        ukko_stream_fail_reason(ctx, "the value is not an order: expected JSON "
                                     "{\"order_id\": ..., \"amount\": <number>}");
        cJSON_Delete(order);
        return UKKO_EINVAL;
    }
    ukko_stream_origin_t o;
    if (ukko_stream_origin(ctx, m, &o) < 0) {
        o.partition = -1;
        o.offset = -1;
    }
    c->count++;
    c->total += amount->valuedouble;

    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "total", c->total);
    cJSON_AddNumberToObject(out, "count", (double)c->count);
    cJSON_AddNumberToObject(out, "source_partition", o.partition);
    cJSON_AddNumberToObject(out, "source_offset", (double)o.offset);
    cJSON_AddStringToObject(out, "node", ukko_entity_node(ctx));
    if (cJSON_IsString(id))
        cJSON_AddStringToObject(out, "order_id", id->valuestring);
    else if (cJSON_IsNumber(id))
        cJSON_AddNumberToObject(out, "order_id", id->valuedouble);
    char *text = cJSON_PrintUnformatted(out);
    int rc = text ? ukko_stream_produce(ctx, ORDERS_OUT, m->entity_id, m->entity_id_len, text,
                                        strlen(text), NULL)
                  : UKKO_ENOMEM;
    if (rc < 0) {
        /* Not produced: the order is retried, so it must not count twice. */
        c->count--;
        c->total -= amount->valuedouble;
    }
    cJSON_free(text);
    cJSON_Delete(out);
    cJSON_Delete(order);
    return rc;
}

const ukko_stream_type_t ukko_orders_type = {
    .type =
        {
            .name = "orders",
            .shards = 0,
            .state_size = sizeof(customer_t),
            .handler = on_order,
        },
    .topic = ORDERS_IN,
};

static int orders_init(ukko_host_t *host, void *ud)
{
    (void)ud;
    return ukko_host_add_hook(host, UKKO_HOOK_STREAM_TYPE, &ukko_orders_type);
}

const ukko_app_t ukko_orders_app = {
    .name = "orders",
    .about = "the demo: a running total per customer of topic orders, one record per order "
             "to orders-processed",
    .init = orders_init,
};
