/* sharding_http.c: what an operator sees of sharding: GET
 * /cluster/shards/{type} (Pekko Management's shard details of this node's
 * region, plus the whole table grouped by owner), the ukko_sharding_*
 * families of /metrics, and sharding as a module of the program (it starts
 * after the cluster and registers the entity types the application
 * offered). Loop thread only. */
#include "sharding_runtime.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ route */

static uint32_t table_owner(sh_t *s, sh_type_t *ty, int32_t i, bool *moving)
{
    if (shard__co_active(s->co))
        return shard__co_owner(s->co, (size_t)ty->co_idx, i, moving);
    *moving = ty->sh[i].moving;
    return ty->sh[i].owner;
}

static cJSON *shards_json(sh_t *s, sh_type_t *ty)
{
    cJSON *root = cJSON_CreateObject();
    char name[160], sid[16];
    cJSON_AddStringToObject(root, "typeName", ty->name);
    cJSON_AddNumberToObject(root, "numberOfShards", ty->n);
    sh__member_name(s, s->self_ident, name, sizeof(name));
    cJSON_AddStringToObject(root, "selfNode", name);
    /* Pekko Management's ShardDetails: this node's region, shard by shard */
    cJSON *regions = cJSON_AddArrayToObject(root, "regions");
    for (int32_t i = 0; i < ty->n; i++) {
        if (ty->sh[i].state == R_NONE)
            continue;
        cJSON *o = cJSON_CreateObject();
        snprintf(sid, sizeof(sid), "%d", (int)i);
        cJSON_AddStringToObject(o, "shardId", sid);
        cJSON_AddNumberToObject(o, "numEntities", (double)ty->sh[i].nents);
        if (ty->sh[i].state != R_RUNNING)
            cJSON_AddStringToObject(o, "status", "handing-off");
        cJSON_AddItemToArray(regions, o);
    }
    /* The whole table, as Pekko's ClusterShardingStats groups it: one
     * region per member, with its shards. */
    bool from_co = shard__co_active(s->co);
    cJSON_AddStringToObject(root, "tableFrom", from_co ? "coordinator" : "last-table");
    cJSON_AddNumberToObject(root, "tableVersion",
                            (double)(from_co ? shard__co_version(s->co, (size_t)ty->co_idx)
                                             : ty->version));
    cJSON *cl = cJSON_AddArrayToObject(root, "clusterRegions");
    cJSON *unalloc = cJSON_AddArrayToObject(root, "unallocated");
    cJSON *moving_a = cJSON_AddArrayToObject(root, "handingOff");
    uint32_t seen[SH_MAX_NODES];
    size_t nseen = 0;
    for (int32_t i = 0; i < ty->n; i++) {
        bool moving = false;
        uint32_t o = table_owner(s, ty, i, &moving);
        snprintf(sid, sizeof(sid), "%d", (int)i);
        if (o == SH_NONE) {
            cJSON_AddItemToArray(unalloc, cJSON_CreateString(sid));
            continue;
        }
        if (moving)
            cJSON_AddItemToArray(moving_a, cJSON_CreateString(sid));
        size_t k = 0;
        while (k < nseen && seen[k] != o)
            k++;
        cJSON *reg = NULL;
        if (k == nseen) {
            if (nseen == SH_MAX_NODES)
                continue;
            seen[nseen++] = o;
            reg = cJSON_CreateObject();
            sh__member_name(s, o, name, sizeof(name));
            cJSON_AddStringToObject(reg, "shardRegion", name);
            cJSON_AddArrayToObject(reg, "shards");
            cJSON_AddItemToArray(cl, reg);
        } else {
            reg = cJSON_GetArrayItem(cl, (int)k);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(reg, "shards"), cJSON_CreateString(sid));
    }
    return root;
}

static void route_shards(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    sh_t *s = ud;
    const char *rest = req->path + strlen("/cluster/shards");
    while (*rest == '/')
        rest++;
    sh_type_t *ty = *rest ? sh__type(s, rest) : NULL;
    if (!ty) {
        cJSON *o = cJSON_CreateObject();
        if (*rest) {
            char msg[200];
            snprintf(msg, sizeof(msg), "Shard region [%.64s] not found", rest);
            cJSON_AddStringToObject(o, "message", msg);
        }
        /* Pekko Management's ShardEntityTypeKeys */
        cJSON *keys = cJSON_AddArrayToObject(o, "entityTypeKeys");
        for (size_t t = 0; t < s->ntypes; t++)
            cJSON_AddItemToArray(keys, cJSON_CreateString(s->types[t].name));
        ukko_http_reply_json(res, *rest ? 404 : 200, o);
        cJSON_Delete(o);
        return;
    }
    cJSON *root = shards_json(s, ty);
    ukko_http_reply_json(res, 200, root);
    cJSON_Delete(root);
}

int sh__routes(sh_t *s, ukko_http_server_t *srv)
{
    int rc = ukko_http_route(srv, "GET", "/cluster/shards", route_shards, s);
    if (rc == 0)
        rc = ukko_http_route(srv, "GET", "/cluster/shards/*", route_shards, s);
    return rc;
}

/* ---------------------------------------------------------- metrics */

void sh__metrics(ukko_buf_t *out, void *ud)
{
    sh_t *s = ud;
    static const char *const tk[] = {"type"};
    ukko_prom_family(out, "ukko_sharding_shards", "gauge", "Shards of the type running on this node.");
    for (size_t t = 0; t < s->ntypes; t++) {
        const char *v[] = {s->types[t].name};
        ukko_prom_sample(out, "ukko_sharding_shards", tk, v, 1,
                         (double)ukko_sharding_local_count(s, s->types[t].name));
    }
    ukko_prom_family(out, "ukko_sharding_entities", "gauge", "Entities live on this node.");
    for (size_t t = 0; t < s->ntypes; t++) {
        const char *v[] = {s->types[t].name};
        ukko_prom_sample(out, "ukko_sharding_entities", tk, v, 1,
                         (double)s->types[t].entities_live);
    }
    if (shard__co_active(s->co)) {
        static const char *const mk[] = {"type", "member"};
        ukko_prom_family(out, "ukko_sharding_member_shards", "gauge",
                         "Shards per member, as the coordinator (this node) allocated them.");
        cluster__mship_t *m = cluster__mship_of(s->c);
        for (size_t t = 0; t < s->ntypes; t++)
            for (size_t i = 0; i < cluster__mship_count(m); i++) {
                const cluster__member_t *mem = cluster__mship_at(m, i);
                if (mem->status >= UKKO_MEMBER_REMOVED)
                    continue;
                char name[160];
                sh__member_name(s, mem->ident, name, sizeof(name));
                const char *v[] = {s->types[t].name, name};
                ukko_prom_sample(out, "ukko_sharding_member_shards", mk, v, 2,
                                 (double)shard__co_load(s->co, (size_t)s->types[t].co_idx,
                                                        mem->ident));
            }
    }
    ukko_prom_family(out, "ukko_sharding_buffered_tells", "gauge",
                     "Tells held on this node while their shard has no owner or is handed off.");
    ukko_prom_sample(out, "ukko_sharding_buffered_tells", NULL, NULL, 0, (double)s->nheld);
    static const char *const rk[] = {"route"};
    ukko_prom_family(out, "ukko_sharding_tells_total", "counter",
                     "Tells by entity id made on this node, by where they went.");
    const char *local[] = {"local"}, *remote[] = {"remote"}, *fwd[] = {"forwarded"};
    ukko_prom_sample(out, "ukko_sharding_tells_total", rk, local, 1, (double)s->tells_local);
    ukko_prom_sample(out, "ukko_sharding_tells_total", rk, remote, 1, (double)s->tells_remote);
    ukko_prom_sample(out, "ukko_sharding_tells_total", rk, fwd, 1, (double)s->tells_forwarded);
    ukko_prom_family(out, "ukko_sharding_tells_refused_total", "counter",
                     "Tells refused because the buffer (cluster.sharding.buffer-size) was full.");
    ukko_prom_sample(out, "ukko_sharding_tells_refused_total", NULL, NULL, 0,
                     (double)s->tells_full);
    ukko_prom_family(out, "ukko_sharding_tells_dropped_total", "counter",
                     "Tells that arrived for a type or shard this node does not have, or "
                     "could not be held (logged).");
    ukko_prom_sample(out, "ukko_sharding_tells_dropped_total", NULL, NULL, 0,
                     (double)s->tells_dropped);
    ukko_prom_family(out, "ukko_sharding_link_drops_total", "counter",
                     "Frames to members that could not be queued, or were queued to a member "
                     "that went away.");
    ukko_prom_sample(out, "ukko_sharding_link_drops_total", NULL, NULL, 0,
                     (double)s->link_drops);
    ukko_prom_family(out, "ukko_sharding_handoffs_total", "counter",
                     "Shards this node handed off (stopped, drained, told the coordinator).");
    ukko_prom_sample(out, "ukko_sharding_handoffs_total", NULL, NULL, 0, (double)s->handoffs);
    ukko_prom_family(out, "ukko_sharding_handoff_seconds", "histogram",
                     "Time from HANDOFF to STOPPED on this node (feed drained, last commit, "
                     "entities stopped).");
    ukko_prom_histogram(out, "ukko_sharding_handoff_seconds", NULL, NULL, 0,
                        ukko_prom_duration_bounds, ukko_prom_duration_nbounds,
                        s->handoff_hist.buckets, s->handoff_hist.count, s->handoff_hist.sum);
    ukko_prom_family(out, "ukko_sharding_frames_duplicate_total", "counter",
                     "Frames a member wrote again after a broken connection, which this node "
                     "already had (dropped).");
    ukko_prom_sample(out, "ukko_sharding_frames_duplicate_total", NULL, NULL, 0,
                     (double)s->frames_dup);
    ukko_prom_family(out, "ukko_sharding_links_idle_closed_total", "counter",
                     "Node-to-node sharding connections closed after "
                     "cluster.sharding.link-idle-timeout with nothing to send.");
    ukko_prom_sample(out, "ukko_sharding_links_idle_closed_total", NULL, NULL, 0,
                     (double)s->links_idle_closed);
    ukko_prom_family(out, "ukko_sharding_shards_stopped_foreign_total", "counter",
                     "Shards stopped at once here because the coordinator's table named "
                     "another owner while they ran here (should stay 0: logged as a bug).");
    ukko_prom_sample(out, "ukko_sharding_shards_stopped_foreign_total", NULL, NULL, 0,
                     (double)s->shards_stopped_foreign);
    ukko_prom_family(out, "ukko_sharding_frames_bad_total", "counter",
                     "Sharding frames that opened under the keyring but did not decode.");
    ukko_prom_sample(out, "ukko_sharding_frames_bad_total", NULL, NULL, 0,
                     (double)s->frames_bad);
}

/* ----------------------------------------------------------- module */

static int module_start(ukko_host_t *host, void *settings, void **state)
{
    (void)settings;
    ukko_cluster_t *c = ukko_host_module(host, "cluster");
    if (!c)
        return 0; /* no cluster, no sharding */
    ukko_sharding_t *s = NULL;
    int rc = ukko_sharding_new(c, ukko_host_actors(host), &s);
    if (rc < 0) {
        ukko_log(UKKO_LOG_ERROR, "sharding", "out of memory creating the sharding");
        return rc;
    }
    const ukko_entity_type_t *t;
    for (size_t i = 0; (t = ukko_host_hook(host, UKKO_HOOK_ENTITY_TYPE, i)) != NULL; i++) {
        rc = ukko_sharding_register(s, t, NULL);
        if (rc < 0) {
            ukko_sharding_free(s);
            return rc;
        }
    }
    rc = ukko_sharding_start(s);
    if (rc < 0) {
        ukko_sharding_free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static int module_routes(ukko_http_server_t *srv, void *state)
{
    return sh__routes(state, srv);
}

static void module_free(void *state)
{
    ukko_sharding_free(state);
}

const ukko_module_t ukko_sharding_module = {
    .name = "sharding",
    .settings_size = 0,
    .register_config = NULL,
    .start = module_start,
    .routes = module_routes,
    .metrics = sh__metrics,
    .free = module_free,
    .commands = NULL,
};
