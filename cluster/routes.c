/* routes.c: the cluster's management routes in Pekko Management's shapes
 * (GET /cluster/members, GET /cluster/members/{address}) and its figures in
 * /metrics. Loop thread only (handlers and collectors run there). */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cluster__uid_hex(const uint8_t *uid, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < CLUSTER__UID_LEN; i++) {
        out[2 * i] = hex[uid[i] >> 4];
        out[2 * i + 1] = hex[uid[i] & 15];
    }
    out[32] = '\0';
}

void cluster__node_name(const char *cluster_name, const cluster__ids_t *ids, uint32_t ident,
                        char *out, size_t outlen)
{
    const cluster__ident_t *id = cluster__ids_at(ids, ident);
    if (!id) {
        snprintf(out, outlen, "?");
        return;
    }
    char a[64];
    cluster__addr_format(cluster__ids_addr_at(ids, id->addr), a, sizeof(a));
    snprintf(out, outlen, "ukko://%s@%s", cluster_name, a);
}

static cJSON *member_json(ukko_cluster_t *c, const cluster__member_t *mem)
{
    char name[160], uid[33];
    const cluster__ident_t *id = cluster__ids_at(c->ids, mem->ident);
    cluster__node_name(c->cc->name, c->ids, mem->ident, name, sizeof(name));
    cluster__uid_hex(id->uid, uid);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "node", name);
    cJSON_AddStringToObject(o, "nodeUid", uid);
    cJSON_AddStringToObject(o, "status", ukko_member_status_name(mem->status));
    cJSON *roles = cJSON_AddArrayToObject(o, "roles");
    for (const char *p = id->roles; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char r[CLUSTER__MAX_ROLE_LEN + 1];
        snprintf(r, sizeof(r), "%.*s", (int)n, p);
        cJSON_AddItemToArray(roles, cJSON_CreateString(r));
        p = comma ? comma + 1 : p + n;
    }
    /* Pekko gives every member its data-center role; tools expect it. */
    cJSON_AddItemToArray(roles, cJSON_CreateString("dc-default"));
    return o;
}

static cJSON *members_json(ukko_cluster_t *c)
{
    cluster__mship_t *m = c->m;
    char name[160];
    cJSON *root = cJSON_CreateObject();
    cluster__node_name(c->cc->name, c->ids, cluster__mship_self(m), name, sizeof(name));
    cJSON_AddStringToObject(root, "selfNode", name);
    cJSON *members = cJSON_AddArrayToObject(root, "members");
    cJSON *unreachable = cJSON_AddArrayToObject(root, "unreachable");
    /* Pekko lists members in address order. */
    size_t n = cluster__mship_count(m);
    const cluster__member_t **sorted = calloc(n ? n : 1, sizeof(*sorted));
    for (size_t i = 0; sorted && i < n; i++) {
        const cluster__member_t *mem = cluster__mship_at(m, i);
        size_t j = i;
        const cluster__addr_t *a =
            cluster__ids_addr_at(c->ids, cluster__ids_at(c->ids, mem->ident)->addr);
        while (j > 0 &&
               cluster__addr_cmp(cluster__ids_addr_at(c->ids,
                                                      cluster__ids_at(c->ids, sorted[j - 1]->ident)
                                                          ->addr),
                                 a) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = mem;
    }
    for (size_t i = 0; sorted && i < n; i++) {
        const cluster__member_t *mem = sorted[i];
        cJSON_AddItemToArray(members, member_json(c, mem));
        if (mem->live == CLUSTER__SUSPECT && mem->status < UKKO_MEMBER_DOWN) {
            cJSON *u = cJSON_CreateObject();
            cluster__node_name(c->cc->name, c->ids, mem->ident, name, sizeof(name));
            cJSON_AddStringToObject(u, "node", name);
            cJSON *by = cJSON_AddArrayToObject(u, "observedBy");
            const cluster__suspicion_t *s = cluster__mship_suspicion(m, mem);
            for (uint32_t k = 0; s && k < s->nconfirmers; k++) {
                char a[64], full[160];
                cluster__addr_format(cluster__ids_addr_at(c->ids, s->confirmers[k]), a,
                                     sizeof(a));
                snprintf(full, sizeof(full), "ukko://%s@%s", c->cc->name, a);
                cJSON_AddItemToArray(by, cJSON_CreateString(full));
            }
            cJSON_AddItemToArray(unreachable, u);
        }
    }
    free(sorted);
    uint32_t leader = cluster__mship_leader(m);
    if (leader != UINT32_MAX) {
        cluster__node_name(c->cc->name, c->ids, leader, name, sizeof(name));
        cJSON_AddStringToObject(root, "leader", name);
    }
    uint32_t oldest = cluster__mship_oldest(m, NULL);
    if (oldest != UINT32_MAX) {
        cluster__node_name(c->cc->name, c->ids, oldest, name, sizeof(name));
        cJSON_AddStringToObject(root, "oldest", name);
        cJSON *per = cJSON_AddObjectToObject(root, "oldestPerRole");
        cJSON_AddStringToObject(per, "dc-default", name);
        for (size_t i = 0; i < c->cc->roles.n; i++) {
            uint32_t o = cluster__mship_oldest(m, c->cc->roles.v[i]);
            if (o == UINT32_MAX)
                continue;
            cluster__node_name(c->cc->name, c->ids, o, name, sizeof(name));
            cJSON_AddStringToObject(per, c->cc->roles.v[i], name);
        }
    }
    return root;
}

int ukko_cluster_members_json(ukko_cluster_t *c, ukko_buf_t *out)
{
    cJSON *root = members_json(c);
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    int rc = s ? ukko_buf_puts(out, s) : UKKO_ENOMEM;
    free(s);
    cJSON_Delete(root);
    return rc;
}

static void route_members(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    ukko_cluster_t *c = ud;
    const char *prefix = "/cluster/members";
    const char *rest = req->path + strlen(prefix);
    while (*rest == '/')
        rest++;
    if (!*rest) {
        cJSON *root = members_json(c);
        ukko_http_reply_json(res, 200, root);
        cJSON_Delete(root);
        return;
    }
    /* Pekko accepts the full address, "system@host:port" or "host:port". */
    const char *at = strrchr(rest, '@');
    const char *hostport = at ? at + 1 : rest;
    cluster__addr_t a;
    const cluster__member_t *mem = NULL;
    if (cluster__addr_parse(hostport, 0, &a) == 0 && a.port)
        mem = cluster__mship_find(c->m, &a);
    if (!mem) {
        cJSON *err = cJSON_CreateObject();
        char msg[400];
        snprintf(msg, sizeof(msg), "Member [%s] not found", rest);
        cJSON_AddStringToObject(err, "message", msg);
        ukko_http_reply_json(res, 404, err);
        cJSON_Delete(err);
        return;
    }
    cJSON *o = member_json(c, mem);
    ukko_http_reply_json(res, 200, o);
    cJSON_Delete(o);
}

static void reply_message(ukko_http_response_t *res, int status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", msg);
    ukko_http_reply_json(res, status, o);
    cJSON_Delete(o);
}

/* GET /bootstrap/seed-nodes (Pekko Management's shape): the members a
 * joining node can join through, Joining, WeaklyUp and Up ones that are
 * reachable; none until this node is a member, and none once it is on its
 * way out (a Leaving, Exiting or Down node is no door into the cluster). */
static void route_seed_nodes(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    ukko_cluster_t *c = ud;
    cluster__mship_t *m = c->m;
    char name[160];
    cJSON *root = cJSON_CreateObject();
    cluster__node_name(c->cc->name, c->ids, cluster__mship_self(m), name, sizeof(name));
    cJSON_AddStringToObject(root, "selfNode", name);
    cJSON *seeds = cJSON_AddArrayToObject(root, "seedNodes");
    if (c->started && !c->stopped && cluster__mship_in_cluster(m) &&
        cluster__mship_self_status(m) < UKKO_MEMBER_LEAVING) {
        for (size_t i = 0; i < cluster__mship_count(m); i++) {
            const cluster__member_t *mem = cluster__mship_at(m, i);
            if (mem->status > UKKO_MEMBER_UP || mem->live != CLUSTER__ALIVE)
                continue;
            cJSON_AddItemToArray(seeds, member_json(c, mem));
        }
    }
    ukko_http_reply_json(res, 200, root);
    cJSON_Delete(root);
}

/* The value of field `key` in a form body or a query ("a=b&c=d"), decoded
 * of '+' and %XX, into out; false when absent. */
static bool form_field(const char *s, size_t n, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && s[end] != '&')
            end++;
        if (end - i > kl && !strncmp(s + i, key, kl) && s[i + kl] == '=') {
            size_t o = 0;
            for (size_t j = i + kl + 1; j < end && o + 1 < outlen; j++) {
                char ch = s[j];
                if (ch == '+')
                    ch = ' ';
                else if (ch == '%') {
                    if (j + 2 >= end)
                        return false;
                    char hex[3] = {s[j + 1], s[j + 2], 0};
                    char *e;
                    long v = strtol(hex, &e, 16);
                    if (*e)
                        return false;
                    ch = (char)v;
                    j += 2;
                }
                out[o++] = ch;
            }
            out[o] = '\0';
            return true;
        }
        i = end + 1;
    }
    return false;
}

/* PUT /cluster/members/{address} with operation=Leave or operation=Down (a
 * form field, as Pekko Management takes it), and DELETE (Leave): only with
 * the management token. */
static void route_member_op(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    ukko_cluster_t *c = ud;
    if (!ukko_node_authorize(c->node, req, res))
        return;
    const char *rest = req->path + strlen("/cluster/members");
    while (*rest == '/')
        rest++;
    char op[32] = "";
    if (!strcmp(req->method, "DELETE"))
        snprintf(op, sizeof(op), "Leave");
    else if (!form_field(req->body ? req->body : "", req->body_len, "operation", op, sizeof(op)))
        form_field(req->query, strlen(req->query), "operation", op, sizeof(op));
    bool leave = !strcasecmp(op, "leave"), down = !strcasecmp(op, "down");
    if (!leave && !down) {
        reply_message(res, 400,
                      "Operation not supported: send the form field operation=Leave or "
                      "operation=Down");
        return;
    }
    const char *at = strrchr(rest, '@');
    const char *hostport = at ? at + 1 : rest;
    cluster__addr_t a;
    const cluster__member_t *mem = NULL;
    if (*rest && cluster__addr_parse(hostport, 0, &a) == 0 && a.port)
        mem = cluster__mship_find(c->m, &a);
    char msg[400];
    if (!mem || mem->status == UKKO_MEMBER_REMOVED) {
        snprintf(msg, sizeof(msg), "Member [%s] not found", rest);
        reply_message(res, 404, msg);
        return;
    }
    char name[160];
    cluster__node_name(c->cc->name, c->ids, mem->ident, name, sizeof(name));
    bool self = mem->ident == cluster__mship_self(c->m);
    ukko_logf(UKKO_LOG_WARN, "cluster",
              UKKO_FIELDS(UKKO_FS("member", name), UKKO_FS("operation", leave ? "Leave" : "Down"),
                          UKKO_FS("peer", req->peer)),
              "operator asked %s of %s (from %s)", leave ? "Leave" : "Down", name, req->peer);
    if (leave && self) {
        /* This node's own leave is its orderly stop: the stop hook leaves. */
        ukko_node_stop(c->node, "asked to leave the cluster (PUT /cluster/members)");
    } else if (leave) {
        cluster__mship_op_leave(c->m, &a);
    } else {
        cluster__mship_op_down(c->m, &a);
    }
    cluster__transport_rearm(c);
    snprintf(msg, sizeof(msg), "%s %s", leave ? "Leaving" : "Downing", name);
    reply_message(res, 200, msg);
}

int cluster__routes_register(ukko_cluster_t *c, ukko_http_server_t *srv)
{
    int rc = ukko_http_route(srv, "GET", "/cluster/members", route_members, c);
    if (rc == 0)
        rc = ukko_http_route(srv, "GET", "/cluster/members/*", route_members, c);
    if (rc == 0)
        rc = ukko_http_route(srv, "PUT", "/cluster/members/*", route_member_op, c);
    if (rc == 0)
        rc = ukko_http_route(srv, "DELETE", "/cluster/members/*", route_member_op, c);
    if (rc == 0)
        rc = ukko_http_route(srv, "GET", "/bootstrap/seed-nodes", route_seed_nodes, c);
    return rc;
}

static void counter(ukko_buf_t *out, const char *name, const char *help, double v)
{
    ukko_prom_family(out, name, "counter", help);
    ukko_prom_sample(out, name, NULL, NULL, 0, v);
}

void cluster__metrics(ukko_buf_t *out, void *ud)
{
    ukko_cluster_t *c = ud;
    cluster__mship_t *m = c->m;
    const cluster__stats_t *st = cluster__mship_stats(m);
    size_t by_status[UKKO_MEMBER_REMOVED + 1] = {0};
    size_t unreachable = 0;
    for (size_t i = 0; i < cluster__mship_count(m); i++) {
        const cluster__member_t *mem = cluster__mship_at(m, i);
        by_status[mem->status]++;
        if (mem->live == CLUSTER__SUSPECT && mem->status < UKKO_MEMBER_DOWN)
            unreachable++;
    }
    ukko_prom_family(out, "ukko_cluster_members", "gauge", "Members known to this node, by status.");
    static const char *const key[] = {"status"};
    for (int s = 0; s < UKKO_MEMBER_REMOVED; s++) {
        const char *v[] = {ukko_member_status_name(s)};
        ukko_prom_sample(out, "ukko_cluster_members", key, v, 1, (double)by_status[s]);
    }
    ukko_prom_family(out, "ukko_cluster_unreachable_members", "gauge",
                     "Members this node suspects (unreachable).");
    ukko_prom_sample(out, "ukko_cluster_unreachable_members", NULL, NULL, 0, (double)unreachable);
    ukko_prom_family(out, "ukko_cluster_self_up", "gauge",
                     "1 while this node is Up or WeaklyUp.");
    int self = cluster__mship_self_status(m);
    ukko_prom_sample(out, "ukko_cluster_self_up", NULL, NULL, 0,
                     self == UKKO_MEMBER_UP || self == UKKO_MEMBER_WEAKLY_UP ? 1 : 0);
    ukko_prom_family(out, "ukko_cluster_local_health", "gauge",
                     "Lifeguard local-health score (0 healthy; probing slows by score + 1).");
    ukko_prom_sample(out, "ukko_cluster_local_health", NULL, NULL, 0,
                     (double)cluster__mship_awareness(m));
    ukko_prom_family(out, "ukko_cluster_packets_total", "counter", "Gossip packets.");
    static const char *const dir[] = {"direction"};
    const char *in[] = {"in"}, *outv[] = {"out"};
    ukko_prom_sample(out, "ukko_cluster_packets_total", dir, in, 1, (double)st->pkts_in);
    ukko_prom_sample(out, "ukko_cluster_packets_total", dir, outv, 1, (double)st->pkts_out);
    ukko_prom_family(out, "ukko_cluster_bytes_total", "counter",
                     "Gossip and sync bytes, sealing included.");
    ukko_prom_sample(out, "ukko_cluster_bytes_total", dir, in, 1, (double)st->bytes_in);
    ukko_prom_sample(out, "ukko_cluster_bytes_total", dir, outv, 1, (double)st->bytes_out);
    ukko_prom_family(out, "ukko_cluster_dropped_packets_total", "counter",
                     "Packets and frames dropped before they were believed, by reason.");
    static const char *const why[] = {"reason"};
    const char *auth[] = {"auth"}, *dec[] = {"decode"}, *big[] = {"oversize"};
    ukko_prom_sample(out, "ukko_cluster_dropped_packets_total", why, auth, 1,
                     (double)st->drop_auth);
    ukko_prom_sample(out, "ukko_cluster_dropped_packets_total", why, dec, 1,
                     (double)st->drop_decode);
    ukko_prom_sample(out, "ukko_cluster_dropped_packets_total", why, big, 1,
                     (double)st->drop_oversize);
    counter(out, "ukko_cluster_suspicions_total", "Suspicions this node started or learned.",
            (double)st->suspicions);
    counter(out, "ukko_cluster_deaths_declared_total", "Members this node declared Down.",
            (double)st->deaths);
    counter(out, "ukko_cluster_refutations_total", "Suspicions of this node it refuted.",
            (double)st->refutes);
    counter(out, "ukko_cluster_loop_stalls_total",
            "Stalls of this node's loop past cluster.loop-lag-tolerance.", (double)st->stalls);
    counter(out, "ukko_cluster_incarnations_replaced_total",
            "Members replaced by a new process at the same address.", (double)st->replaced);
    counter(out, "ukko_cluster_syncs_total", "State syncs started.", (double)st->syncs);
    counter(out, "ukko_cluster_refused_total",
            "Syncs refused by a member's host (its process was gone).", (double)st->refused);
    counter(out, "ukko_cluster_keyring_reloads_total", "Keyring files re-read after a change.",
            (double)c->keyring_reloads);
    cluster__sbr_metrics(out, m);
}
