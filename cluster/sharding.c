/* sharding.c: the regions of a real node: which shards of each type run
 * here on the coordinator's word, the hand-off steps on this side (fence,
 * stop the feed, drain the entities, STOPPED), tells routed to their
 * owner or held while a shard has none, and the coordinator hosted while
 * this node is the oldest Up member. Loop thread only. Invariants: a shard
 * starts here only from a table of the coordinator this region obeys, and
 * never while the table marks it moving; a shard stops here only on a
 * HANDOFF, a graceful stop's hand-off, or at once when this node is downed;
 * a tell is delivered, sent, held or counted as dropped with a log line. */
#include "sharding_runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- identities */

uint32_t sh__ident_of(sh_t *s, const sh_node_t *node)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    const cluster__member_t *mem = cluster__mship_find(m, &node->addr);
    if (!mem)
        return SH_NONE;
    const cluster__ident_t *id = cluster__ids_at(cluster__mship_ids(m), mem->ident);
    if (memcmp(id->uid, node->uid, CLUSTER__UID_LEN) != 0)
        return SH_NONE;
    return mem->ident;
}

void sh__node_of(sh_t *s, uint32_t ident, sh_node_t *out)
{
    cluster__ids_t *ids = cluster__mship_ids(cluster__mship_of(s->c));
    const cluster__ident_t *id = cluster__ids_at(ids, ident);
    out->addr = *cluster__ids_addr_at(ids, id->addr);
    memcpy(out->uid, id->uid, CLUSTER__UID_LEN);
}

void sh__member_name(sh_t *s, uint32_t ident, char *out, size_t outlen)
{
    if (ident == SH_NONE) {
        snprintf(out, outlen, "none");
        return;
    }
    cluster__node_name(cluster__name_of(s->c), cluster__mship_ids(cluster__mship_of(s->c)), ident,
                       out, outlen);
}

/* Down, Removed, or no longer in the view as that incarnation. */
bool sh__member_gone(sh_t *s, uint32_t ident)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    cluster__ids_t *ids = cluster__mship_ids(m);
    const cluster__ident_t *id = cluster__ids_at(ids, ident);
    const cluster__member_t *mem = cluster__mship_find(m, cluster__ids_addr_at(ids, id->addr));
    return !mem || mem->ident != ident || mem->status >= UKKO_MEMBER_DOWN;
}

sh_type_t *sh__type(sh_t *s, const char *name)
{
    for (size_t i = 0; i < s->ntypes; i++)
        if (!strcmp(s->types[i].name, name))
            return &s->types[i];
    return NULL;
}

/* The coordinator this region obeys: the one it last reported to while
 * that one is still in the cluster, else the oldest Up or Leaving member. */
static uint32_t coordinator_of_view(sh_t *s)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    cluster__ids_t *ids = cluster__mship_ids(m);
    uint32_t best = SH_NONE;
    const cluster__ident_t *bi = NULL;
    for (size_t i = 0; i < cluster__mship_count(m); i++) {
        const cluster__member_t *mem = cluster__mship_at(m, i);
        if (mem->status != UKKO_MEMBER_UP && mem->status != UKKO_MEMBER_LEAVING)
            continue;
        const cluster__ident_t *id = cluster__ids_at(ids, mem->ident);
        if (!bi || id->started_ms < bi->started_ms ||
            (id->started_ms == bi->started_ms &&
             cluster__addr_cmp(cluster__ids_addr_at(ids, id->addr),
                               cluster__ids_addr_at(ids, bi->addr)) < 0)) {
            best = mem->ident;
            bi = id;
        }
    }
    return best;
}

static uint32_t coordinator(sh_t *s)
{
    if (s->pinned != SH_NONE && !sh__member_gone(s, s->pinned)) {
        cluster__mship_t *m = cluster__mship_of(s->c);
        cluster__ids_t *ids = cluster__mship_ids(m);
        const cluster__member_t *mem = cluster__mship_find(
            m, cluster__ids_addr_at(ids, cluster__ids_at(ids, s->pinned)->addr));
        if (mem && mem->status <= UKKO_MEMBER_LEAVING)
            return s->pinned;
    }
    return coordinator_of_view(s);
}

/* ------------------------------------------------------------- sending */

static void kick(sh_t *s)
{
    if (!ev_is_active(&s->kick)) {
        ev_timer_set(&s->kick, 0., 0.);
        ev_timer_start(s->loop, &s->kick);
    }
}

int sh__send(sh_t *s, uint32_t to, const ukko_buf_t *body)
{
    if (to == SH_NONE || !body->len)
        return UKKO_EINVAL;
    if (to == s->self_ident) {
        struct sh_local *l = malloc(sizeof(*l) + body->len);
        if (!l) {
            ukko_log(UKKO_LOG_ERROR, "sharding", "out of memory queueing a frame to self");
            abort();
        }
        l->next = NULL;
        l->n = body->len;
        memcpy(l->body, body->data, body->len);
        if (s->ltail)
            s->ltail->next = l;
        else
            s->lhead = l;
        s->ltail = l;
        kick(s);
        return 0;
    }
    sh_node_t n;
    sh__node_of(s, to, &n);
    int rc = sh__link_send(s, &n.addr, (const uint8_t *)body->data, body->len);
    if (rc < 0)
        s->link_drops++;
    return rc;
}

static void body_init(sh_t *s, ukko_buf_t *b, uint8_t kind)
{
    ukko_buf_init(b, (size_t)s->c->cc->max_sync_bytes);
    sh_put_header(b, kind, &s->self, 0);
}

static void send_small(sh_t *s, uint32_t to, uint8_t kind, const char *type, int32_t shard)
{
    ukko_buf_t b;
    body_init(s, &b, kind);
    sh_put_name(&b, type);
    sh_put_u32(&b, (uint32_t)shard);
    sh__send(s, to, &b);
    ukko_buf_destroy(&b);
}

/* ------------------------------------------------ coordinator's outbox */

static int64_t co_now(void *ud)
{
    (void)ud;
    return ukko_now_ms();
}

static void co_send_table(void *ud, uint32_t to, size_t t)
{
    sh_t *s = ud;
    shard__co_t *co = s->co;
    int32_t n = shard__co_nshards(co, t);
    uint32_t idx[SH_MAX_NODES];
    size_t nn = 0;
    ukko_buf_t b;
    body_init(s, &b, UKKO_WIRE_SH_TABLE);
    sh_put_u64(&b, shard__co_version(co, t));
    sh_put_name(&b, shard__co_type_name(co, t));
    sh_put_u32(&b, (uint32_t)n);
    /* the owners, each once */
    for (int32_t i = 0; i < n; i++) {
        uint32_t o = shard__co_owner(co, t, i, NULL);
        bool have = o == SH_NONE;
        for (size_t k = 0; k < nn && !have; k++)
            have = idx[k] == o;
        if (!have && nn < SH_MAX_NODES)
            idx[nn++] = o;
    }
    sh_put_u16(&b, (uint16_t)nn);
    for (size_t k = 0; k < nn; k++) {
        sh_node_t node;
        sh__node_of(s, idx[k], &node);
        sh_put_node(&b, &node);
    }
    for (int32_t i = 0; i < n; i++) {
        bool moving;
        uint32_t o = shard__co_owner(co, t, i, &moving);
        uint16_t k = 0xffff;
        for (size_t j = 0; j < nn; j++)
            if (idx[j] == o)
                k = (uint16_t)j;
        sh_put_u16(&b, k);
        sh_put_u8(&b, moving ? SH_TABLE_MOVING : 0);
    }
    sh__send(s, to, &b);
    ukko_buf_destroy(&b);
}

static void co_send_handoff(void *ud, uint32_t to, size_t t, int32_t shard)
{
    sh_t *s = ud;
    uint32_t f[SH_MAX_NODES];
    size_t nf = shard__co_fencers(s->co, f, SH_MAX_NODES);
    ukko_buf_t b;
    body_init(s, &b, UKKO_WIRE_SH_HANDOFF);
    sh_put_name(&b, shard__co_type_name(s->co, t));
    sh_put_u32(&b, (uint32_t)shard);
    sh_put_u16(&b, (uint16_t)nf);
    for (size_t i = 0; i < nf; i++) {
        sh_node_t node;
        sh__node_of(s, f[i], &node);
        sh_put_node(&b, &node);
    }
    sh__send(s, to, &b);
    ukko_buf_destroy(&b);
}

static void co_send_report_req(void *ud, uint32_t to, uint64_t nonce)
{
    sh_t *s = ud;
    ukko_buf_t b;
    body_init(s, &b, UKKO_WIRE_SH_REPORT_REQ);
    sh_put_u64(&b, nonce);
    sh__send(s, to, &b);
    ukko_buf_destroy(&b);
}

static void co_moved(void *ud, size_t t, int32_t shard, uint32_t from, uint32_t to,
                     int64_t handoff_ms, const char *why)
{
    sh_t *s = ud;
    char a[160], b[160];
    sh__member_name(s, from, a, sizeof(a));
    sh__member_name(s, to, b, sizeof(b));
    const char *type = shard__co_type_name(s->co, t);
    if (from == SH_NONE && !strcmp(why, "allocated"))
        ukko_logf(UKKO_LOG_DEBUG, "sharding",
                  UKKO_FIELDS(UKKO_FS("type", type), UKKO_FI("shard", shard), UKKO_FS("to", b)),
                  "shard %s/%d allocated to %s", type, (int)shard, b);
    else if (from == SH_NONE)
        ukko_logf(UKKO_LOG_INFO, "sharding",
                  UKKO_FIELDS(UKKO_FS("type", type), UKKO_FI("shard", shard), UKKO_FS("to", b),
                              UKKO_FS("why", why)),
                  "shard %s/%d allocated to %s (%s)", type, (int)shard, b, why);
    else if (handoff_ms >= 0)
        ukko_logf(UKKO_LOG_INFO, "sharding",
                  UKKO_FIELDS(UKKO_FS("type", type), UKKO_FI("shard", shard), UKKO_FS("from", a),
                              UKKO_FS("to", b), UKKO_FI("handoff_ms", handoff_ms),
                              UKKO_FS("why", why)),
                  "shard %s/%d moved from %s to %s (%s; hand-off took %lld ms)", type,
                  (int)shard, a, b, why, (long long)handoff_ms);
    else
        ukko_logf(UKKO_LOG_INFO, "sharding",
                  UKKO_FIELDS(UKKO_FS("type", type), UKKO_FI("shard", shard), UKKO_FS("from", a),
                              UKKO_FS("to", b), UKKO_FS("why", why)),
                  "shard %s/%d moved from %s to %s (%s; no hand-off)", type, (int)shard, a, b,
                  why);
}

/* The membership as the coordinator needs it. */
static void feed_view(sh_t *s)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    cluster__ids_t *ids = cluster__mship_ids(m);
    size_t n = cluster__mship_count(m);
    shard__co_member_t *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const cluster__member_t *mem = cluster__mship_at(m, i);
        if (mem->status == UKKO_MEMBER_REMOVED)
            continue;
        v[k].ident = mem->ident;
        v[k].status = mem->status;
        v[k].reachable = mem->ident == s->self_ident || mem->live == CLUSTER__ALIVE;
        v[k].rank = cluster__ids_at(ids, mem->ident)->hash;
        k++;
    }
    bool self_ok = cluster__mship_in_cluster(m) && !s->stopped_now &&
                   cluster__mship_self_status(m) < UKKO_MEMBER_EXITING;
    shard__co_view(s->co, v, k, self_ok && coordinator_of_view(s) == s->self_ident);
    free(v);
}

/* ---------------------------------------------------------- held tells */

static void held_free(sh_held_t *h)
{
    free(h);
}

static int hold(sh_shard_t *sh, uint32_t msg_type, const char *id, size_t id_len,
                const void *data, size_t len, const char *tp)
{
    sh_t *s = sh->type->s;
    size_t bytes = sizeof(sh_held_t) + id_len + len + 1;
    if (s->nheld < (size_t)s->cfg->buffer_size &&
        s->held_bytes + bytes > (size_t)s->cfg->buffer_bytes) {
        s->tells_full++;
        int64_t now = ukko_now_ms();
        if (now - s->last_full_log >= 5000) {
            s->last_full_log = now;
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", sh->type->name), UKKO_FI("shard", sh->id),
                                  UKKO_FI("held_bytes", s->held_bytes)),
                      "%zu bytes of tells are held while shards have no owner (shard %s/%d "
                      "now): the buffer's bytes are used up, tells are refused (UKKO_EAGAIN); "
                      "raise cluster.sharding.buffer-bytes",
                      s->held_bytes, sh->type->name, (int)sh->id);
        }
        return UKKO_EAGAIN;
    }
    if (s->nheld >= (size_t)s->cfg->buffer_size) {
        s->tells_full++;
        int64_t now = ukko_now_ms();
        if (now - s->last_full_log >= 5000) {
            s->last_full_log = now;
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", sh->type->name), UKKO_FI("shard", sh->id),
                                  UKKO_FI("held", s->nheld)),
                      "%zu tells are held while shards have no owner (shard %s/%d now): the "
                      "buffer is full, tells are refused; raise cluster.sharding.buffer-size",
                      s->nheld, sh->type->name, (int)sh->id);
        }
        return UKKO_EAGAIN;
    }
    sh_held_t *h = malloc(sizeof(*h) + id_len + len + 1);
    if (!h)
        return UKKO_ENOMEM;
    h->next = NULL;
    h->msg_type = msg_type;
    h->id = (char *)(h + 1);
    memcpy(h->id, id, id_len);
    h->id_len = id_len;
    h->data = h->id + id_len;
    if (len)
        memcpy(h->data, data, len);
    h->len = len;
    snprintf(h->tp, sizeof(h->tp), "%s", tp ? tp : "");
    if (sh->tail)
        sh->tail->next = h;
    else
        sh->head = h;
    sh->tail = h;
    sh->nheld++;
    s->nheld++;
    s->held_bytes += bytes;
    return 0;
}

/* 0, UKKO_EAGAIN (the link to the owner is full: nothing was sent), or
 * UKKO_E2BIG (the tell does not fit a frame). Logs a refusal (at most every
 * 5 s), naming the shard and the setting that raises the limit. */
static int send_tell(sh_shard_t *sh, uint32_t to, uint8_t hop, uint32_t msg_type, const char *id,
                     size_t id_len, const void *data, size_t len, const char *tp)
{
    sh_t *s = sh->type->s;
    ukko_buf_t b;
    ukko_buf_init(&b, (size_t)s->c->cc->max_sync_bytes);
    int rc = sh_put_tell(&b, &s->self, sh->type->name, sh->id, hop, msg_type, id, id_len, tp,
                         data, len);
    if (rc == 0)
        rc = sh__send(s, to, &b);
    ukko_buf_destroy(&b);
    if (rc == 0)
        return 0;
    if (rc != UKKO_EAGAIN)
        rc = UKKO_E2BIG;
    int64_t now = ukko_now_ms();
    if (now - s->last_refused_log >= 5000) {
        s->last_refused_log = now;
        char owner[160];
        sh__member_name(s, to, owner, sizeof(owner));
        if (rc == UKKO_EAGAIN)
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", sh->type->name), UKKO_FI("shard", sh->id),
                                  UKKO_FS("owner", owner)),
                      "a tell to shard %s/%d is refused (UKKO_EAGAIN): the link to its owner %s "
                      "is full of frames it has not acknowledged; the caller may try again, "
                      "and 8 x cluster.max-sync-bytes is the link's room",
                      sh->type->name, (int)sh->id, owner);
        else
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", sh->type->name), UKKO_FI("shard", sh->id),
                                  UKKO_FI("bytes", len)),
                      "a tell of %zu bytes to shard %s/%d does not fit one frame: refused "
                      "(UKKO_E2BIG); raise cluster.max-sync-bytes above the largest tell",
                      len, sh->type->name, (int)sh->id);
    }
    return rc;
}

static bool delivers(const sh_shard_t *sh)
{
    return sh->state == R_RUNNING || sh->state == R_FENCING;
}

/* Held tells go on once the table names an owner that is not moving. */
static void flush_held(sh_shard_t *sh)
{
    sh_t *s = sh->type->s;
    while (sh->head) {
        if (sh->owner == SH_NONE || sh->moving)
            return;
        if (sh->owner == s->self_ident && !delivers(sh))
            return;
        sh_held_t *h = sh->head;
        if (sh->owner != s->self_ident) {
            int rc = send_tell(sh, sh->owner, 1, h->msg_type, h->id, h->id_len, h->data, h->len,
                               h->tp);
            if (rc == UKKO_EAGAIN) {
                /* Still held, in order: tried again on the next tick. */
                s->held_blocked = true;
                return;
            }
            if (rc < 0)
                s->tells_dropped++; /* logged by send_tell */
        }
        sh->head = h->next;
        if (!sh->head)
            sh->tail = NULL;
        sh->nheld--;
        s->nheld--;
        s->held_bytes -= sizeof(sh_held_t) + h->id_len + h->len + 1;
        if (sh->owner == s->self_ident)
            (void)sh__deliver(sh, h->id, h->id_len, h->msg_type, h->data, h->len, h->tp, NULL,
                              NULL, NULL);
        held_free(h);
    }
}

/* ------------------------------------------------------------- shards */

static void shard_start(sh_shard_t *sh)
{
    sh_t *s = sh->type->s;
    sh_type_t *ty = sh->type;
    if (ty->has_hooks && ty->hooks.start) {
        int rc = ty->hooks.start(ty->hooks.ud, ty->name, sh->id);
        if (rc < 0) {
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", sh->id)),
                      "shard %s/%d: its start hook refused it (%s): the coordinator places it "
                      "elsewhere",
                      ty->name, (int)sh->id, ukko_strerror(rc));
            send_small(s, coordinator(s), UKKO_WIRE_SH_REFUSED, ty->name, sh->id);
            return;
        }
    }
    sh->state = R_RUNNING;
    sh->hook_done = false;
    ukko_logf(UKKO_LOG_DEBUG, "sharding", UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", sh->id)),
              "shard %s/%d started on this node", ty->name, (int)sh->id);
}

static void on_hook_stopped(void *arg)
{
    sh_shard_t *sh = arg;
    sh->hook_done = true;
    kick(sh->type->s);
}

static bool fenced_by(const sh_shard_t *sh, uint32_t ident)
{
    for (size_t i = 0; i < sh->nfences; i++)
        if (sh->fences[i] == ident)
            return true;
    return false;
}

static void add_fence(sh_shard_t *sh, uint32_t ident)
{
    if (fenced_by(sh, ident))
        return;
    if (sh->nfences == sh->fencecap) {
        size_t cap = sh->fencecap ? sh->fencecap * 2 : 8;
        uint32_t *f = realloc(sh->fences, cap * sizeof(*f));
        if (!f)
            return;
        sh->fences = f;
        sh->fencecap = cap;
    }
    sh->fences[sh->nfences++] = ident;
}

/* The hand-off as its own span ("handoff <type>", a root), made once it is
 * over with its measured start. */
static void handoff_span(const char *type, int32_t shard, int64_t took_ms)
{
    if (!ukko_trace_enabled())
        return;
    char name[SH_MAX_NAME + 16];
    snprintf(name, sizeof(name), "handoff %s", type);
    ukko_span_t *prev = ukko_trace_enter(NULL);
    ukko_span_t *sp = ukko_span_start(name, UKKO_SPAN_INTERNAL, NULL);
    ukko_trace_leave(prev);
    ukko_span_set_start_ago(sp, took_ms);
    ukko_span_set_str(sp, "ukko.entity.type", type);
    ukko_span_set_int(sp, "ukko.shard", shard);
    ukko_span_end(sp);
}

/* Moves a shard in hand-off on: fences -> stop hook -> drained -> STOPPED. */
void sh__shard_progress(sh_shard_t *sh)
{
    sh_t *s = sh->type->s;
    sh_type_t *ty = sh->type;
    int64_t now = ukko_now_ms();
    if (sh->state == R_FENCING) {
        size_t missing = 0;
        for (size_t i = 0; i < sh->nwait; i++)
            if (!fenced_by(sh, sh->wait[i]) && !sh__member_gone(s, sh->wait[i]))
                missing++;
        if (missing && now < sh->fence_deadline)
            return;
        if (missing)
            ukko_logf(UKKO_LOG_WARN, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", sh->id),
                                  UKKO_FI("missing", missing)),
                      "hand-off of shard %s/%d: %zu member(s) did not confirm they hold its "
                      "tells within cluster.sharding.handoff-timeout; stopping it anyway "
                      "(their tells in flight are held and forwarded by this node)",
                      ty->name, (int)sh->id, missing);
        sh->state = R_STOPPING;
        sh->hook_done = !(ty->has_hooks && ty->hooks.stop);
        if (!sh->hook_done)
            ty->hooks.stop(ty->hooks.ud, ty->name, sh->id, false, on_hook_stopped, sh);
    }
    if (sh->state != R_STOPPING || !sh->hook_done || sh->inflight > 0)
        return;
    sh__entities_stop(sh, false);
    sh->state = R_NONE;
    free(sh->wait);
    sh->wait = NULL;
    sh->nwait = 0;
    int64_t took = now - sh->handoff_at;
    s->handoffs++;
    s->handoff_ms_sum += (uint64_t)(took > 0 ? took : 0);
    ukko_prom_hist_observe(&s->handoff_hist, ukko_prom_duration_bounds,
                           ukko_prom_duration_nbounds, took > 0 ? (double)took / 1000.0 : 0);
    ukko_logf(UKKO_LOG_INFO, "sharding",
              UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", sh->id),
                          UKKO_FI("duration_ms", took)),
              "shard %s/%d handed off by this node in %lld ms (feed stopped and drained, "
              "entities stopped)",
              ty->name, (int)sh->id, (long long)took);
    handoff_span(ty->name, sh->id, took);
    send_small(s, coordinator(s), UKKO_WIRE_SH_STOPPED, ty->name, sh->id);
}

static void on_handoff(sh_t *s, const sh_frame_t *f, sh_shard_t *sh)
{
    if (sh->state == R_NONE) {
        send_small(s, coordinator(s), UKKO_WIRE_SH_STOPPED, sh->type->name, sh->id);
        return;
    }
    if (sh->state != R_RUNNING)
        return; /* under way: this is a resend */
    free(sh->wait);
    sh->wait = calloc(f->nnodes ? f->nnodes : 1, sizeof(*sh->wait));
    sh->nwait = 0;
    for (uint32_t i = 0; sh->wait && i < f->nnodes; i++) {
        sh_node_t node;
        sh_frame_node(f, i, &node);
        uint32_t id = sh__ident_of(s, &node);
        if (id != SH_NONE && id != s->self_ident)
            sh->wait[sh->nwait++] = id;
    }
    sh->state = R_FENCING;
    sh->handoff_at = ukko_now_ms();
    sh->fence_deadline = sh->handoff_at + s->cfg->handoff_timeout_ms;
    sh__shard_progress(sh);
}

/* The coordinator's table names another owner for a shard running here:
 * it never should (a shard moves only after its hand-off or the margin),
 * but if it does, two nodes would run it. Stop it here at once (no
 * hand-off: the other owner runs it already), and say so. */
static void shard_stop_foreign(sh_shard_t *sh, uint32_t other)
{
    sh_t *s = sh->type->s;
    sh_type_t *ty = sh->type;
    char who[160];
    sh__member_name(s, other, who, sizeof(who));
    s->shards_stopped_foreign++;
    ukko_logf(UKKO_LOG_ERROR, "sharding",
              UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", sh->id),
                          UKKO_FS("owner", who)),
              "shard %s/%d runs here but the coordinator's table names %s as its owner: "
              "stopped here at once, without a hand-off, so that it never runs twice (a bug in "
              "ukko: please report it with both nodes' logs)",
              ty->name, (int)sh->id, other == SH_NONE ? "a member this node does not know" : who);
    sh->state = R_NONE;
    if (ty->has_hooks && ty->hooks.stop)
        ty->hooks.stop(ty->hooks.ud, ty->name, sh->id, true, on_hook_stopped, sh);
    sh__entities_stop(sh, true);
}

static void on_table(sh_t *s, const sh_frame_t *f, uint32_t from)
{
    sh_type_t *ty = sh__type(s, f->type);
    if (!ty || ty->n == 0 || (int32_t)f->nshards != ty->n)
        return; /* not a type of ours, or not sized yet: the next table comes in 1 s */
    if (from != coordinator(s) || s->stopped_now)
        return;
    if (f->version <= ty->version && from == ty->version_from)
        return; /* a periodic resend, or a late one */
    ty->version = f->version;
    ty->version_from = from;
    s->seen_table = true;
    uint32_t *owners = calloc(f->nnodes ? f->nnodes : 1, sizeof(*owners));
    if (!owners)
        return;
    for (uint32_t i = 0; i < f->nnodes; i++) {
        sh_node_t node;
        sh_frame_node(f, i, &node);
        owners[i] = sh__ident_of(s, &node);
    }
    for (int32_t i = 0; i < ty->n; i++) {
        sh_shard_t *sh = &ty->sh[i];
        uint16_t o;
        uint8_t fl;
        sh_frame_owner(f, (uint32_t)i, &o, &fl);
        sh->owner = o == 0xffff ? SH_NONE : owners[o];
        sh->moving = (fl & SH_TABLE_MOVING) != 0;
        if (sh->moving && sh->owner != SH_NONE && !sh->fenced) {
            /* Nothing more from this node to the old owner for this shard:
             * the fence follows this node's last tell on the same link. */
            sh->fenced = true;
            if (sh->owner == s->self_ident)
                add_fence(sh, s->self_ident);
            else
                send_small(s, sh->owner, UKKO_WIRE_SH_FENCE, ty->name, sh->id);
        } else if (!sh->moving) {
            sh->fenced = false;
        }
        if (sh->owner == s->self_ident && !sh->moving && sh->state == R_NONE) {
            if (!s->going_away)
                shard_start(sh);
            else /* allocated before our going-away arrived: place it elsewhere */
                send_small(s, from, UKKO_WIRE_SH_REFUSED, ty->name, sh->id);
        }
        else if (o != 0xffff && sh->owner != s->self_ident && sh->state == R_RUNNING &&
                 !sh->moving)
            shard_stop_foreign(sh, owners[o]);
        if (sh->state == R_NONE && !sh->moving) {
            sh->nfences = 0; /* fences belong to one move */
        }
        flush_held(sh);
    }
    free(owners);
}

static void send_report(sh_t *s, uint32_t to, uint64_t nonce)
{
    ukko_buf_t b;
    body_init(s, &b, UKKO_WIRE_SH_REPORT);
    sh_put_u64(&b, nonce);
    sh_put_u8(&b, (uint8_t)((s->seen_table ? SH_REPORT_SEEN_TABLE : 0) |
                            (s->going_away ? SH_REPORT_GOING_AWAY : 0)));
    uint32_t n = 0;
    for (size_t t = 0; t < s->ntypes; t++)
        for (int32_t i = 0; i < s->types[t].n; i++)
            n += s->types[t].sh[i].state != R_NONE;
    sh_put_u32(&b, n);
    for (size_t t = 0; t < s->ntypes; t++)
        for (int32_t i = 0; i < s->types[t].n; i++) {
            sh_shard_t *sh = &s->types[t].sh[i];
            if (sh->state == R_NONE)
                continue;
            sh_put_name(&b, s->types[t].name);
            sh_put_u32(&b, (uint32_t)i);
            sh_put_u8(&b, sh->state == R_RUNNING ? SH_RUNNING : SH_STOPPING);
        }
    sh__send(s, to, &b);
    ukko_buf_destroy(&b);
}

static void on_report(sh_t *s, const sh_frame_t *f, uint32_t from)
{
    shard__co_entry_t *e = calloc(f->nentries ? f->nentries : 1, sizeof(*e));
    if (!e)
        return;
    size_t k = 0, off = 0;
    char type[SH_MAX_NAME + 1];
    int32_t shard;
    uint8_t st;
    while (sh_report_next(f, &off, type, &shard, &st) == 1) {
        sh_type_t *ty = sh__type(s, type);
        if (!ty || ty->co_idx < 0)
            continue;
        e[k++] = (shard__co_entry_t){(size_t)ty->co_idx, shard, st};
    }
    shard__co_report(s->co, from, f->version, f->flags, e, k);
    free(e);
}

static void on_tell(sh_t *s, const sh_frame_t *f)
{
    sh_type_t *ty = sh__type(s, f->type);
    if (!ty || f->shard >= ty->n) {
        s->tells_dropped++;
        ukko_logf(UKKO_LOG_WARN, "sharding", UKKO_FIELDS(UKKO_FS("type", f->type)),
                  "a tell for entity type \"%s\" shard %d arrived, which this node does not "
                  "have: dropped (every node must register the same types)",
                  f->type, (int)f->shard);
        return;
    }
    sh_shard_t *sh = &ty->sh[f->shard];
    if (delivers(sh) && !sh->head) {
        (void)sh__deliver(sh, f->id, f->id_len, f->msg_type, f->data, f->len, f->traceparent,
                          NULL, NULL, NULL);
        return;
    }
    if (f->hop == 0 && !sh->head && sh->owner != SH_NONE && !sh->moving &&
        sh->owner != s->self_ident &&
        send_tell(sh, sh->owner, 1, f->msg_type, f->id, f->id_len, f->data, f->len,
                  f->traceparent) == 0) {
        s->tells_forwarded++;
        return;
    }
    /* A forward the owner's link refused is held here and goes on later. */
    if (hold(sh, f->msg_type, f->id, f->id_len, f->data, f->len, f->traceparent) < 0) {
        s->tells_dropped++;
        return;
    }
    flush_held(sh);
}

static struct sh_peer *peer_of(sh_t *s, const ukko_wire_hdr_t *h)
{
    for (size_t i = 0; i < s->npeers; i++)
        if (cluster__addr_eq(&s->peers[i].addr, &h->from) &&
            !memcmp(s->peers[i].uid, h->uid, CLUSTER__UID_LEN))
            return &s->peers[i];
    if (s->npeers == s->peercap) {
        size_t cap = s->peercap ? s->peercap * 2 : 16;
        struct sh_peer *p = realloc(s->peers, cap * sizeof(*p));
        if (!p)
            return NULL;
        s->peers = p;
        s->peercap = cap;
    }
    struct sh_peer *p = &s->peers[s->npeers++];
    memset(p, 0, sizeof(*p));
    p->addr = h->from;
    memcpy(p->uid, h->uid, CLUSTER__UID_LEN);
    return p;
}

/* Senders not heard from for 10 minutes are forgotten: their process is
 * gone (a new one has a new uid). */
static void peers_prune(sh_t *s, int64_t now)
{
    for (size_t i = 0; i < s->npeers;) {
        if (now - s->peers[i].seen > 600000) {
            s->peers[i] = s->peers[--s->npeers];
            continue;
        }
        i++;
    }
}

static void on_body(sh_t *s, const uint8_t *body, size_t n);

uint64_t sh__on_frame(sh_t *s, const uint8_t *body, size_t n)
{
    sh_frame_t f;
    if (s->freed)
        return 0;
    if (n >= 1 && body[0] != UKKO_WIRE_SH_SEQ) {
        on_body(s, body, n); /* from this node itself */
        return 0;
    }
    if (sh_decode(body, n, &f) < 0) {
        s->frames_bad++;
        return 0;
    }
    struct sh_peer *p = peer_of(s, &f.hdr);
    if (!p)
        return 0;
    p->seen = ukko_now_ms();
    if (f.version <= p->last) {
        s->frames_dup++; /* written again after a broken connection: had it */
        return p->last;
    }
    p->last = f.version;
    on_body(s, f.inner, f.inner_len);
    return p->last;
}

static void on_body(sh_t *s, const uint8_t *body, size_t n)
{
    sh_frame_t f;
    s->frames_in++;
    if (sh_decode(body, n, &f) < 0 || f.kind == UKKO_WIRE_SH_SEQ || f.kind == UKKO_WIRE_SH_ACK) {
        s->frames_bad++;
        return;
    }
    if (f.kind == UKKO_WIRE_SH_TELL) {
        on_tell(s, &f);
        return;
    }
    sh_node_t from_node;
    from_node.addr = f.hdr.from;
    memcpy(from_node.uid, f.hdr.uid, CLUSTER__UID_LEN);
    uint32_t from = sh__ident_of(s, &from_node);
    if (from == SH_NONE)
        return; /* not a member (yet, or any more) of this node's view */
    sh_type_t *ty = f.type[0] ? sh__type(s, f.type) : NULL;
    sh_shard_t *sh = ty && f.shard >= 0 && f.shard < ty->n ? &ty->sh[f.shard] : NULL;
    switch (f.kind) {
    case UKKO_WIRE_SH_TABLE:
        on_table(s, &f, from);
        break;
    case UKKO_WIRE_SH_HANDOFF:
        if (sh && from == coordinator(s))
            on_handoff(s, &f, sh);
        break;
    case UKKO_WIRE_SH_FENCE:
        if (sh) {
            add_fence(sh, from);
            sh__shard_progress(sh);
        }
        break;
    case UKKO_WIRE_SH_STOPPED:
        if (ty && sh)
            shard__co_stopped(s->co, from, (size_t)ty->co_idx, f.shard);
        break;
    case UKKO_WIRE_SH_REFUSED:
        if (ty && sh)
            shard__co_refused(s->co, from, (size_t)ty->co_idx, f.shard);
        break;
    case UKKO_WIRE_SH_REPORT_REQ:
        if (s->stopped_now)
            break;
        s->pinned = from;
        send_report(s, from, f.version);
        break;
    case UKKO_WIRE_SH_REPORT:
        on_report(s, &f, from);
        break;
    case UKKO_WIRE_SH_GOING_AWAY:
        shard__co_going_away(s->co, from);
        break;
    default:
        break;
    }
}

/* -------------------------------------------------------------- timers */

static void self_downed(sh_t *s);

static void run(sh_t *s)
{
    if (!s->started || s->freed)
        return;
    int64_t now = ukko_now_ms();
    /* The MemberDowned event is not the only word: a queue of events that
     * overflowed is replaced by a snapshot, which may not carry it. Down
     * only: Removed also ends a graceful leave, which exits 0. */
    if (!s->downed_seen &&
        cluster__mship_self_status(cluster__mship_of(s->c)) == UKKO_MEMBER_DOWN) {
        self_downed(s);
        return;
    }
    feed_view(s);
    s->co_next = shard__co_tick(s->co);
    bool retry_held = s->held_blocked;
    s->held_blocked = false;
    for (size_t t = 0; t < s->ntypes; t++)
        for (int32_t i = 0; i < s->types[t].n; i++) {
            sh_shard_t *sh = &s->types[t].sh[i];
            if (sh->state == R_FENCING || sh->state == R_STOPPING)
                sh__shard_progress(sh);
            if (retry_held && sh->head)
                flush_held(sh);
        }
    if (s->going_away) {
        size_t running = 0;
        for (size_t t = 0; t < s->ntypes; t++)
            for (int32_t i = 0; i < s->types[t].n; i++)
                running += s->types[t].sh[i].state != R_NONE;
        if (running == 0 && s->stop_task) {
            ukko_log(UKKO_LOG_INFO, "sharding",
                     "every shard of this node is handed off: the region has shut down");
            ukko_stop_task_done(s->stop_task);
            s->stop_task = NULL;
        } else if (running && now - s->going_away_sent >= 1000) {
            s->going_away_sent = now;
            ukko_buf_t b;
            body_init(s, &b, UKKO_WIRE_SH_GOING_AWAY);
            sh__send(s, coordinator(s), &b);
            ukko_buf_destroy(&b);
        }
    }
    if (now >= s->next_passivate) {
        sh__passivate(s, now);
        s->next_passivate = now + 1000;
        sh__links_prune(s);
        peers_prune(s, now);
    }
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sh_t *s = w->data;
    /* Frames to self, in order; what they send to self waits for the next kick. */
    struct sh_local *l = s->lhead;
    s->lhead = s->ltail = NULL;
    while (l) {
        struct sh_local *next = l->next;
        sh__on_frame(s, l->body, l->n);
        free(l);
        l = next;
    }
    run(s);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run(w->data);
}

/* This node is Down (or later): every shard stops at once, and the node
 * exits when so configured. Once. */
static void self_downed(sh_t *s)
{
    if (s->downed_seen)
        return;
    s->downed_seen = true;
    ukko_log(UKKO_LOG_WARN, "sharding",
             "this node was downed: every shard stops at once, no hand-off");
    ukko_sharding_stop_now(s);
    if (s->c->cc->shutdown_when_down) {
        const char *why = cluster__mship_down_reason(cluster__mship_of(s->c));
        char msg[300];
        snprintf(msg, sizeof(msg), "this node was downed (%s); exiting 1 so that it is "
                 "restarted as a new member (cluster.run-coordinated-shutdown-when-down)",
                 why ? why : "by an operator or another member");
        ukko_node_stop_for(s->c->node, UKKO_STOP_DOWNED, msg);
    }
}

static void on_member_event(const ukko_cluster_event_t *ev, void *ud)
{
    sh_t *s = ud;
    if (ev->member && ev->member->self && ev->member->status >= UKKO_MEMBER_DOWN &&
        ev->kind == UKKO_CLUSTER_MEMBER_DOWN) {
        self_downed(s);
        return;
    }
    kick(s);
}

/* ------------------------------------------------------------- public */

uint64_t cluster__sharding_frame(ukko_cluster_t *c, const uint8_t *body, size_t n)
{
    if (c->sharding && c->sharding->started)
        return sh__on_frame(c->sharding, body, n);
    return 0;
}

size_t cluster__sharding_ack_body(ukko_cluster_t *c, uint64_t seq, uint8_t *out, size_t cap)
{
    sh_t *s = c->sharding;
    if (!s || !s->started)
        return 0;
    ukko_buf_t b;
    ukko_buf_init(&b, cap);
    sh_put_header(&b, UKKO_WIRE_SH_ACK, &s->self, 0);
    sh_put_u64(&b, seq);
    size_t n = b.len <= cap ? b.len : 0;
    if (n)
        memcpy(out, b.data, n);
    ukko_buf_destroy(&b);
    return n;
}

int ukko_sharding_new(ukko_cluster_t *c, ukko_actor_system_t *sys, ukko_sharding_t **out)
{
    sh_t *s = calloc(1, sizeof(*s));
    if (!s)
        return UKKO_ENOMEM;
    s->c = c;
    s->sys = sys;
    s->cfg = &c->cc->sharding;
    s->loop = c->loop;
    s->pinned = SH_NONE;
    shard__co_params_t p = {.down_removal_margin_ms = cluster__down_removal_margin_ms(c->cc),
                            .rebalance_interval_ms = s->cfg->rebalance_interval_ms,
                            .max_simultaneous = s->cfg->rebalance_max_simultaneous,
                            .handoff_timeout_ms = s->cfg->handoff_timeout_ms < 1000
                                                      ? s->cfg->handoff_timeout_ms
                                                      : 1000}; /* resends: cheap, idempotent */
    shard__co_env_t env = {s, co_now, co_send_table, co_send_handoff, co_send_report_req,
                           co_moved};
    s->co = shard__co_new(&p, &env, cluster__mship_self(c->m));
    if (!s->co) {
        free(s);
        return UKKO_ENOMEM;
    }
    ev_init(&s->tick, on_tick);
    s->tick.data = s;
    ev_init(&s->kick, on_kick);
    s->kick.data = s;
    c->sharding = s;
    *out = s;
    return 0;
}

ukko_sharding_t *ukko_cluster_sharding(ukko_cluster_t *c)
{
    return c ? c->sharding : NULL;
}

int ukko_sharding_register(ukko_sharding_t *s, const ukko_entity_type_t *t,
                           const ukko_shard_hooks_t *hooks)
{
    if (!t || !t->name || !sh_type_name_ok(t->name, strlen(t->name)) || !t->handler ||
        t->shards < 0 || t->shards > SH_MAX_SHARDS) {
        ukko_logf(UKKO_LOG_ERROR, "sharding", UKKO_FIELDS(UKKO_FS("type", t && t->name ? t->name : "")),
                  "entity type \"%s\": a name of [a-z0-9._-] (1 to %d), a handler and 0 to %d "
                  "shards are needed",
                  t && t->name ? t->name : "(null)", SH_MAX_NAME, SH_MAX_SHARDS);
        return UKKO_EINVAL;
    }
    if (sh__type(s, t->name))
        return UKKO_EINVAL;
    if (s->ntypes >= SH_MAX_TYPES)
        return UKKO_E2BIG;
    int idx = shard__co_add_type(s->co, t->name, 0);
    if (idx < 0)
        return idx;
    sh_type_t *ty = &s->types[s->ntypes++];
    memset(ty, 0, sizeof(*ty));
    ty->s = s;
    ty->t = *t;
    snprintf(ty->name, sizeof(ty->name), "%s", t->name);
    ty->t.name = ty->name;
    if (hooks) {
        ty->hooks = *hooks;
        ty->has_hooks = true;
    }
    ty->co_idx = idx;
    ty->passivate_ms = t->passivate_idle_ms > 0 ? t->passivate_idle_ms
                                                : s->cfg->passivate_idle_ms;
    if (t->shards > 0)
        return ukko_sharding_set_shards(s, t->name, t->shards);
    return 0;
}

int ukko_sharding_set_shards(ukko_sharding_t *s, const char *type, int32_t shards)
{
    sh_type_t *ty = sh__type(s, type);
    if (!ty)
        return UKKO_EINVAL;
    if (shards <= 0 || shards > SH_MAX_SHARDS)
        return UKKO_EINVAL;
    if (ty->n == shards)
        return 0;
    if (ty->n != 0)
        return UKKO_EINVAL;
    ty->sh = calloc((size_t)shards, sizeof(*ty->sh));
    if (!ty->sh)
        return UKKO_ENOMEM;
    for (int32_t i = 0; i < shards; i++) {
        ty->sh[i].type = ty;
        ty->sh[i].id = i;
        ty->sh[i].owner = SH_NONE;
    }
    ty->n = shards;
    int rc = shard__co_set_shards(s->co, (size_t)ty->co_idx, shards);
    if (s->started)
        kick(s);
    return rc;
}

static void task_shutdown_region(ukko_stop_task_t *task, void *ud)
{
    sh_t *s = ud;
    if (ukko_node_stop_reason(ukko_stop_task_node(task)) == UKKO_STOP_DOWNED) {
        ukko_sharding_stop_now(s);
        ukko_stop_task_done(task);
        return;
    }
    size_t running = 0;
    for (size_t t = 0; t < s->ntypes; t++)
        for (int32_t i = 0; i < s->types[t].n; i++)
            running += s->types[t].sh[i].state != R_NONE;
    s->going_away = true;
    if (running == 0 || s->stopped_now) {
        /* Nothing to hand off; the coordinator still hears it, so that it
         * places nothing here while the leave goes on. */
        if (!s->stopped_now) {
            ukko_buf_t b;
            body_init(s, &b, UKKO_WIRE_SH_GOING_AWAY);
            sh__send(s, coordinator(s), &b);
            ukko_buf_destroy(&b);
        }
        ukko_stop_task_done(task);
        return;
    }
    ukko_logf(UKKO_LOG_INFO, "sharding", UKKO_FIELDS(UKKO_FI("shards", running)),
              "shutting down this node's region: asking the coordinator to hand off its %zu "
              "shard(s)",
              running);
    s->stop_task = task;
    s->going_away_sent = 0;
    kick(s);
}

int ukko_sharding_start(ukko_sharding_t *s)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    s->self_ident = cluster__mship_self(m);
    s->loop_thread = pthread_self(); /* the loop's: the start runs on it */
    sh__node_of(s, s->self_ident, &s->self);
    cluster__addr_format(&s->self.addr, s->self_name, sizeof(s->self_name));
    int rc = sh__entity_setup(s);
    if (rc < 0)
        return rc;
    rc = ukko_node_add_stop_task(s->c->node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION,
                                 "cluster-sharding-shutdown-region", task_shutdown_region, s);
    if (rc < 0)
        return rc;
    rc = ukko_cluster_subscribe(s->c, on_member_event, s, &s->sub);
    if (rc < 0)
        return rc;
    s->started = true;
    ev_timer_set(&s->tick, 0.1, 0.1);
    ev_timer_start(s->loop, &s->tick);
    char types[256] = "";
    for (size_t t = 0; t < s->ntypes; t++) {
        size_t l = strlen(types);
        snprintf(types + l, sizeof(types) - l, "%s%s/%d", l ? ", " : "", s->types[t].name,
                 (int)s->types[t].n);
    }
    ukko_logf(UKKO_LOG_INFO, "sharding", UKKO_FIELDS(UKKO_FI("types", s->ntypes)),
              "sharding started with %zu entity type(s)%s%s", s->ntypes, s->ntypes ? ": " : "",
              types);
    kick(s);
    return 0;
}

void ukko_sharding_stop_now(ukko_sharding_t *s)
{
    if (!s || s->stopped_now)
        return;
    s->stopped_now = true;
    for (size_t t = 0; t < s->ntypes; t++) {
        sh_type_t *ty = &s->types[t];
        for (int32_t i = 0; i < ty->n; i++) {
            sh_shard_t *sh = &ty->sh[i];
            if (sh->state == R_NONE)
                continue;
            /* A feed already stopping for a hand-off is told again, at once:
             * its drain must not outlive this node's shard (the next owner
             * starts after the down-removal margin), and records it would
             * hand on would find no shard here. The hook accepts an at-once
             * stop after a graceful one and answers both. */
            bool hooked = sh->state == R_RUNNING || sh->state == R_FENCING ||
                          (sh->state == R_STOPPING && !sh->hook_done);
            sh->state = R_NONE;
            if (ty->has_hooks && ty->hooks.stop && hooked)
                ty->hooks.stop(ty->hooks.ud, ty->name, i, true, on_hook_stopped, sh);
            sh__entities_stop(sh, true);
        }
    }
    shard__co_view(s->co, NULL, 0, false);
    if (s->stop_task) {
        ukko_stop_task_done(s->stop_task);
        s->stop_task = NULL;
    }
}

int ukko_sharding_local_count(const ukko_sharding_t *s, const char *type)
{
    const sh_type_t *ty = sh__type((sh_t *)s, type);
    if (!ty)
        return UKKO_ENOENT;
    int n = 0;
    for (int32_t i = 0; i < ty->n; i++)
        n += ty->sh[i].state != R_NONE;
    return n;
}

void ukko_sharding_free(ukko_sharding_t *s)
{
    if (!s)
        return;
    s->freed = true;
    if (s->sub)
        ukko_cluster_unsubscribe(s->c, s->sub);
    ev_timer_stop(s->loop, &s->tick);
    ev_timer_stop(s->loop, &s->kick);
    sh__entity_teardown(s);
    for (size_t t = 0; t < s->ntypes; t++) {
        sh_type_t *ty = &s->types[t];
        for (int32_t i = 0; i < ty->n; i++) {
            sh_shard_t *sh = &ty->sh[i];
            sh__entities_stop(sh, true);
            free(sh->ents);
            free(sh->fences);
            free(sh->wait);
            for (sh_held_t *h = sh->head; h;) {
                sh_held_t *next = h->next;
                held_free(h);
                h = next;
            }
        }
        free(ty->sh);
    }
    while (s->lhead) {
        struct sh_local *next = s->lhead->next;
        free(s->lhead);
        s->lhead = next;
    }
    sh__links_free(s);
    free(s->peers);
    shard__co_free(s->co);
    if (s->c && s->c->sharding == s)
        s->c->sharding = NULL;
    free(s);
}

/* ---------------------------------------------------------------- tell */

/* The calling thread's trace context as a traceparent into tp ("" when none). */
static const char *current_tp(char tp[UKKO_TRACEPARENT_LEN + 1])
{
    ukko_trace_ctx_t c;
    if (ukko_trace_current_context(&c) < 0)
        return NULL;
    ukko_trace_format(&c, tp);
    return tp;
}

/* A remote tell's "tell <type>" producer span, child of the caller's
 * context; the frame carries its traceparent (tp), or the caller's while
 * tracing is off. */
static ukko_span_t *tell_span_begin(sh_shard_t *sh, const char *id, size_t id_len,
                                    char tp[UKKO_TRACEPARENT_LEN + 1], const char **tpp)
{
    char name[SH_MAX_NAME + 8];
    snprintf(name, sizeof(name), "tell %s", sh->type->name);
    ukko_span_t *sp = ukko_span_start(name, UKKO_SPAN_PRODUCER, NULL);
    if (!sp) {
        *tpp = current_tp(tp);
        return NULL;
    }
    if (ukko_span_recording(sp)) {
        char owner[160], eid[SH_MAX_ID + 1];
        sh__member_name(sh->type->s, sh->owner, owner, sizeof(owner));
        ukko_span_set_str(sp, "ukko.entity.type", sh->type->name);
        ukko_span_set_int(sp, "ukko.shard", sh->id);
        ukko_span_set_str(sp, "ukko.owner", owner);
        bool text = id_len <= SH_MAX_ID;
        for (size_t i = 0; text && i < id_len; i++)
            text = id[i] >= 0x20 && id[i] <= 0x7e;
        if (text) {
            memcpy(eid, id, id_len);
            eid[id_len] = '\0';
            ukko_span_set_str(sp, "ukko.entity.id", eid);
        }
    }
    ukko_span_traceparent(sp, tp);
    *tpp = tp;
    return sp;
}

static void tell_span_end(ukko_span_t *sp, int rc)
{
    if (rc < 0)
        ukko_span_record_error(sp, rc, rc == UKKO_EAGAIN ? "the link to the owner is full"
                                                         : "the tell does not fit a frame");
    ukko_span_end(sp);
}

int ukko_entity_tell(ukko_sharding_t *s, const char *type, const char *id, size_t id_len,
                     uint32_t msg_type, const void *data, size_t len)
{
    if (s->started && !pthread_equal(pthread_self(), s->loop_thread))
        return msg_type >= UKKO_MSG_SYSTEM
                   ? UKKO_EINVAL
                   : sh__tell_queue(s, type, id, id_len, msg_type, data, len);
    sh_type_t *ty = sh__type(s, type);
    if (!ty || msg_type >= UKKO_MSG_SYSTEM || id_len > SH_MAX_ID ||
        len > (size_t)s->cfg->max_message_bytes)
        return UKKO_EINVAL;
    if (ty->n == 0)
        return UKKO_EAGAIN; /* shard count not known yet */
    sh_shard_t *sh = &ty->sh[ukko_shard_of(id, id_len, ty->n)];
    if (!sh->head && sh->owner != SH_NONE && !sh->moving && !s->stopped_now) {
        if (sh->owner == s->self_ident && delivers(sh)) {
            s->tells_local++;
            return sh__deliver(sh, id, id_len, msg_type, data, len, NULL, NULL, NULL, NULL);
        }
        if (sh->owner != s->self_ident) {
            char tp[UKKO_TRACEPARENT_LEN + 1];
            const char *tpp = NULL;
            ukko_span_t *sp = tell_span_begin(sh, id, id_len, tp, &tpp);
            int rc = send_tell(sh, sh->owner, 0, msg_type, id, id_len, data, len, tpp);
            tell_span_end(sp, rc);
            if (rc < 0) {
                s->tells_full += rc == UKKO_EAGAIN;
                return rc;
            }
            s->tells_remote++;
            return 0;
        }
    }
    char tp[UKKO_TRACEPARENT_LEN + 1];
    return hold(sh, msg_type, id, id_len, data, len, current_tp(tp));
}

int ukko_entity_deliver(ukko_sharding_t *s, const char *type, int32_t shard,
                        const ukko_entity_msg_t *m, ukko_entity_done_fn done, void *arg)
{
    sh_type_t *ty = sh__type(s, type);
    if (!ty || shard < 0 || shard >= ty->n || !m || m->type >= UKKO_MSG_SYSTEM ||
        m->entity_id_len > SH_MAX_ID)
        return UKKO_EINVAL;
    sh_shard_t *sh = &ty->sh[shard];
    if (sh->state == R_NONE)
        return UKKO_ENOENT;
    return sh__deliver(sh, m->entity_id, m->entity_id_len, m->type, m->data, m->len,
                       m->traceparent, m->origin, done, arg);
}
