/* bootstrap.c: how a node becomes a member without a seed list: discovery
 * (the Kubernetes API, watched; or a static list) gives the contact points,
 * each is asked GET /bootstrap/seed-nodes every probe-interval, and the node
 * joins the cluster a point reports, or, when none exists and the rule of
 * the map holds, the lowest point forms it. Once a member, it stops asking
 * the API and the points. Loop thread only. Invariants: a node that has
 * seen seed nodes never forms; a point's answer counts only for
 * probing-failure-timeout; nothing is formed on a stale set. */
#include "bootstrap.h"

#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEEDS 64
#define MAX_ANSWER_BYTES (4u << 20) /* seed nodes of a large cluster */
#define LOG_EVERY_MS 10000

typedef struct bs_point {
    struct cluster__bootstrap *b;
    ukko_contact_point_t cp; /* pod owned */
    cluster__addr_t addr;    /* its host, for comparing with this node */
    bool addr_ok;
    ukko_discovery_get_t *get;
    int64_t next_probe;
    int64_t answered_at; /* last answer without seed nodes (0: none) */
    int64_t seeds_at;    /* last answer with seed nodes (0: none) */
    cluster__addr_t seeds[MAX_SEEDS];
    size_t nseeds;
    int64_t failing_since; /* first failure since the last answer (0: none) */
    char error[200];
} bs_point_t;

struct cluster__bootstrap {
    ukko_cluster_t *c;
    struct ev_loop *loop;
    const ukko_cluster_bootstrap_config_t *bc;
    const ukko_discovery_config_t *dc;
    ukko_discovery_t *d;
    int mgmt_port;
    bs_point_t **pts; /* sorted as discovery sorts: the lowest first */
    size_t npts;
    bool have_set;
    int64_t set_since;
    int expected;    /* 0: not known */
    bool asking_expected;
    int expected_tries;
    int64_t next_expected;
    ev_timer tick;
    bool running, done;
    int64_t started_at;
    cluster__addr_t joined_through[MAX_SEEDS];
    size_t njoined;
    char why[320];
    int64_t last_log;
    uint64_t probes, probe_failures, foreign;
};

/* ------------------------------------------------------------- the rule */

cluster__bs_act_t cluster__bootstrap_decide(const ukko_cluster_bootstrap_config_t *bc,
                                            const cluster__bs_view_t *v, char *why,
                                            size_t whylen)
{
    if (v->seeds) {
        snprintf(why, whylen, "a contact point reports an existing cluster: joining it");
        return CLUSTER__BS_JOIN;
    }
    if (!bc->new_cluster_enabled) {
        snprintf(why, whylen,
                 "no contact point reports a cluster yet, and cluster.bootstrap."
                 "new-cluster-enabled is false: waiting to join one");
        return CLUSTER__BS_WAIT;
    }
    if (!v->points) {
        snprintf(why, whylen, "no contact points discovered yet");
        return CLUSTER__BS_WAIT;
    }
    if (!v->self_listed) {
        snprintf(why, whylen,
                 "this node is not among the %zu contact point(s) discovered (yet): it forms "
                 "nothing until it sees itself",
                 v->points);
        return CLUSTER__BS_WAIT;
    }
    /* A StatefulSet of one pod is a cluster of one: the expected size, when
     * known, caps the required number (Pekko needs required-contact-point-nr
     * set to 1 by hand for that). */
    size_t required = (size_t)bc->required_contact_point_nr;
    if (v->expected && v->expected < required)
        required = v->expected;
    if (v->answered < required) {
        snprintf(why, whylen,
                 "%zu of %zu contact point(s) answered; %zu must have (cluster.bootstrap."
                 "required-contact-point-nr)",
                 v->answered, v->points, required);
        return CLUSTER__BS_WAIT;
    }
    if (bc->contact_with_all_contact_points && v->answered < v->points) {
        snprintf(why, whylen, "%zu of %zu contact point(s) answered; waiting for all of them",
                 v->answered, v->points);
        return CLUSTER__BS_WAIT;
    }
    if (!v->self_lowest) {
        snprintf(why, whylen,
                 "%zu contact point(s) answered, none in a cluster: the lowest address forms "
                 "it, and this node is not the lowest",
                 v->answered);
        return CLUSTER__BS_WAIT;
    }
    if (!v->fresh) {
        snprintf(why, whylen, "discovery is failing: no cluster is formed on a stale set");
        return CLUSTER__BS_WAIT;
    }
    if (v->expected && v->points >= v->expected && v->answered >= v->expected) {
        snprintf(why, whylen,
                 "all %zu expected contact points answered, none in a cluster, and this node "
                 "is the lowest",
                 v->expected);
        return CLUSTER__BS_FORM;
    }
    if (v->stable_ms >= bc->stable_margin_ms) {
        snprintf(why, whylen,
                 "%zu contact point(s) answered, none in a cluster, the set unchanged for "
                 "cluster.bootstrap.stable-margin, and this node is the lowest",
                 v->answered);
        return CLUSTER__BS_FORM;
    }
    char t[32];
    ukko_format_duration(bc->stable_margin_ms - v->stable_ms, t, sizeof(t));
    if (v->expected)
        snprintf(why, whylen,
                 "%zu of %zu expected contact points discovered; forming anyway if the set "
                 "stays as it is for %s more (stable-margin)",
                 v->points, v->expected, t);
    else
        snprintf(why, whylen,
                 "this node is the lowest of %zu contact point(s); forming once the set has "
                 "been stable for %s more (stable-margin; the expected size is not known)",
                 v->points, t);
    return CLUSTER__BS_WAIT;
}

/* ------------------------------------------------------ the answers */

int cluster__bootstrap_parse_seeds(const char *json, size_t len, const char *cluster_name,
                                   cluster__addr_t *out, size_t max, size_t *n, size_t *foreign)
{
    *n = 0;
    *foreign = 0;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(root, "seedNodes");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(seeds)) {
        cJSON_Delete(root);
        return UKKO_EPROTO;
    }
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "ukko://%s@", cluster_name);
    const cJSON *s;
    cJSON_ArrayForEach(s, seeds)
    {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(s, "node");
        if (!cJSON_IsString(node))
            continue;
        const char *v = node->valuestring;
        /* "ukko://name@host:port": another cluster's nodes are not ours
         * to join (their packets would not open here anyway). */
        const char *at = strrchr(v, '@');
        if (!at || strncmp(v, prefix, strlen(prefix)) || at != v + strlen(prefix) - 1) {
            (*foreign)++;
            continue;
        }
        cluster__addr_t a;
        if (*n < max && cluster__addr_parse(at + 1, 0, &a) == 0 && a.port) {
            bool dup = false;
            for (size_t i = 0; i < *n; i++)
                dup = dup || cluster__addr_eq(&out[i], &a);
            if (!dup)
                out[(*n)++] = a;
        }
    }
    cJSON_Delete(root);
    return 0;
}

/* ---------------------------------------------------------- probing */

static void evaluate(cluster__bootstrap_t *b);

static bool recent(const cluster__bootstrap_t *b, int64_t at, int64_t now)
{
    return at && now - at <= b->bc->probing_failure_timeout_ms;
}

static void point_free(cluster__bootstrap_t *b, bs_point_t *p)
{
    if (!p)
        return;
    ukko_discovery_get_cancel(b->d, p->get);
    free(p->cp.pod);
    free(p);
}

static void on_answer(ukko_discovery_t *d, const ukko_discovery_reply_t *r, void *ud)
{
    (void)d;
    bs_point_t *p = ud;
    cluster__bootstrap_t *b = p->b;
    p->get = NULL;
    int64_t now = ukko_now_ms();
    p->next_probe = now + b->bc->probe_interval_ms;
    char auth[96];
    ukko_discovery_authority(&p->cp, auth, sizeof(auth));
    size_t n = 0, foreign = 0;
    if (r->status < 0) {
        snprintf(p->error, sizeof(p->error), "%s", r->error ? r->error : ukko_strerror(r->status));
    } else if (r->http_status != 200) {
        snprintf(p->error, sizeof(p->error), "GET /bootstrap/seed-nodes answered %d",
                 r->http_status);
    } else if (cluster__bootstrap_parse_seeds(r->body, r->len, b->c->cc->name, p->seeds,
                                              MAX_SEEDS, &n, &foreign) < 0) {
        snprintf(p->error, sizeof(p->error), "the answer is not a seed-nodes document");
    } else {
        p->error[0] = '\0';
        p->failing_since = 0;
        p->nseeds = n;
        if (n)
            p->seeds_at = now;
        else
            p->answered_at = now;
        if (foreign && !b->foreign++)
            ukko_logf(UKKO_LOG_WARN, "bootstrap", UKKO_FIELDS(UKKO_FS("contact_point", auth)),
                      "contact point %s reports seed nodes of another cluster name than "
                      "cluster.name \"%s\": they are ignored (a different cluster.name, or "
                      "another service's pods matching the label selector?)",
                      auth, b->c->cc->name);
        evaluate(b);
        return;
    }
    b->probe_failures++;
    if (!p->failing_since)
        p->failing_since = now;
    ukko_logf(UKKO_LOG_DEBUG, "bootstrap", UKKO_FIELDS(UKKO_FS("contact_point", auth)),
              "probe of %s failed: %s", auth, p->error);
    evaluate(b);
}

static void probe(cluster__bootstrap_t *b, bs_point_t *p, int64_t now)
{
    if (p->get || now < p->next_probe)
        return;
    b->probes++;
    p->next_probe = now + b->bc->probe_interval_ms;
    p->get = ukko_discovery_get(b->d, &p->cp, "/bootstrap/seed-nodes",
                                b->bc->probing_failure_timeout_ms, MAX_ANSWER_BYTES, on_answer, p);
}

/* ----------------------------------------------------- the point set */

static void on_points(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    cluster__bootstrap_t *b = ud;
    if (b->done)
        return;
    const ukko_contact_points_t *cps = res->points;
    bs_point_t **next = calloc(cps->n ? cps->n : 1, sizeof(*next));
    if (!next) {
        ukko_log(UKKO_LOG_ERROR, "bootstrap", "out of memory taking the contact points");
        return;
    }
    /* Keep what was learnt of points that stay; new ones are asked now. */
    bool changed = !b->have_set || cps->n != b->npts;
    for (size_t i = 0; i < cps->n; i++) {
        const ukko_contact_point_t *cp = &cps->v[i];
        for (size_t j = 0; j < b->npts; j++) {
            bs_point_t *old = b->pts[j];
            if (old && !strcmp(old->cp.host, cp->host) && old->cp.port == cp->port) {
                next[i] = old;
                b->pts[j] = NULL;
                if (j != i)
                    changed = true;
                break;
            }
        }
        if (next[i])
            continue;
        changed = true;
        bs_point_t *p = calloc(1, sizeof(*p));
        if (!p || !(p->cp.pod = strdup(cp->pod ? cp->pod : ""))) {
            free(p);
            continue;
        }
        p->b = b;
        snprintf(p->cp.host, sizeof(p->cp.host), "%s", cp->host);
        p->cp.port = cp->port;
        char hp[96];
        ukko_discovery_authority(cp, hp, sizeof(hp));
        p->addr_ok = cluster__addr_parse(hp, 0, &p->addr) == 0;
        next[i] = p;
    }
    for (size_t j = 0; j < b->npts; j++)
        point_free(b, b->pts[j]);
    free(b->pts);
    /* Points that could not be kept (out of memory) leave holes: close them. */
    size_t k = 0;
    for (size_t i = 0; i < cps->n; i++)
        if (next[i])
            next[k++] = next[i];
    b->pts = next;
    b->npts = k;
    int64_t now = ukko_now_ms();
    if (changed)
        b->set_since = now;
    b->have_set = true;
    for (size_t i = 0; i < b->npts; i++)
        probe(b, b->pts[i], now);
    evaluate(b);
}

static void on_expected(ukko_discovery_t *d, int replicas, const char *why, void *ud)
{
    (void)d;
    cluster__bootstrap_t *b = ud;
    b->asking_expected = false;
    if (b->done)
        return;
    if (replicas > 0) {
        b->expected = replicas;
        ukko_logf(UKKO_LOG_INFO, "bootstrap", UKKO_FIELDS(UKKO_FI("expected", replicas)),
                  "expecting %d contact point(s) (%s): the cluster forms as soon as all of them "
                  "answered",
                  replicas, why);
        evaluate(b);
        return;
    }
    /* Asked again a few times: the API may not be reachable yet. */
    b->expected_tries++;
    b->next_expected = ukko_now_ms() + 2000;
    if (b->expected_tries == 1) {
        char t[32];
        ukko_format_duration(b->bc->stable_margin_ms, t, sizeof(t));
        ukko_logf(UKKO_LOG_INFO, "bootstrap", UKKO_FIELDS(UKKO_FS("reason", why)),
                  "the expected number of contact points is not known (%s): a new cluster "
                  "forms once the set has been stable for %s (cluster.bootstrap.stable-margin; "
                  "set cluster.bootstrap.expected-contact-point-nr to form sooner)",
                  why, t);
    }
}

/* ----------------------------------------------------------- deciding */

static void finish(cluster__bootstrap_t *b, const char *how)
{
    b->done = true;
    b->why[0] = '\0';
    ev_timer_stop(b->loop, &b->tick);
    /* A member needs neither the API nor the contact points any more. */
    ukko_discovery_stop(b->d);
    for (size_t i = 0; i < b->npts; i++) {
        ukko_discovery_get_cancel(b->d, b->pts[i]->get);
        b->pts[i]->get = NULL;
    }
    ukko_logf(UKKO_LOG_INFO, "bootstrap",
              UKKO_FIELDS(UKKO_FI("took_ms", ukko_now_ms() - b->started_at)),
              "bootstrap done in %lld ms: %s; no more requests to the API or the contact points",
              (long long)(ukko_now_ms() - b->started_at), how);
}

static void evaluate(cluster__bootstrap_t *b)
{
    if (b->done || !b->running)
        return;
    ukko_cluster_t *c = b->c;
    if (cluster__mship_in_cluster(c->m)) {
        finish(b, b->njoined ? "joined the cluster" : "formed the cluster");
        return;
    }
    int64_t now = ukko_now_ms();
    size_t expected = b->bc->expected_contact_point_nr > 0
                          ? (size_t)b->bc->expected_contact_point_nr
                          : (size_t)(b->expected > 0 ? b->expected : 0);
    cluster__bs_view_t v = {.points = b->npts,
                            .expected = expected,
                            .fresh = ukko_discovery_fresh(b->d),
                            .stable_ms = b->have_set ? now - b->set_since : 0};
    cluster__addr_t seeds[MAX_SEEDS];
    size_t nseeds = 0;
    const char *through = "?";
    for (size_t i = 0; i < b->npts; i++) {
        bs_point_t *p = b->pts[i];
        bool mine = p->addr_ok && p->cp.port == b->mgmt_port &&
                    !memcmp(p->addr.ip, c->self.ip, sizeof(p->addr.ip));
        if (mine) {
            v.self_listed = true;
            v.self_lowest = i == 0;
        }
        if (recent(b, p->seeds_at, now) && p->seeds_at >= p->answered_at) {
            v.seeds = true;
            through = p->cp.pod && *p->cp.pod ? p->cp.pod : p->cp.host;
            for (size_t k = 0; k < p->nseeds && nseeds < MAX_SEEDS; k++) {
                bool dup = false;
                for (size_t j = 0; j < nseeds; j++)
                    dup = dup || cluster__addr_eq(&seeds[j], &p->seeds[k]);
                if (!dup)
                    seeds[nseeds++] = p->seeds[k];
            }
        }
        if (recent(b, p->answered_at, now) || recent(b, p->seeds_at, now))
            v.answered++;
    }
    cluster__bs_act_t act = cluster__bootstrap_decide(b->bc, &v, b->why, sizeof(b->why));
    if (act == CLUSTER__BS_JOIN) {
        bool same = nseeds == b->njoined;
        for (size_t i = 0; same && i < nseeds; i++)
            same = cluster__addr_eq(&seeds[i], &b->joined_through[i]);
        if (!same) {
            memcpy(b->joined_through, seeds, nseeds * sizeof(seeds[0]));
            b->njoined = nseeds;
            char s0[64];
            cluster__addr_format(&seeds[0], s0, sizeof(s0));
            ukko_logf(UKKO_LOG_INFO, "bootstrap",
                      UKKO_FIELDS(UKKO_FS("seed", s0), UKKO_FI("seeds", nseeds),
                                  UKKO_FS("reported_by", through)),
                      "joining the existing cluster through %s%s (%zu seed node(s), reported by "
                      "contact point %s)",
                      s0, nseeds > 1 ? " and others" : "", nseeds, through);
            if (cluster__mship_join(c->m, seeds, nseeds) == 0)
                cluster__transport_rearm(c);
        }
        snprintf(b->why, sizeof(b->why), "joining the cluster that contact point %s reports",
                 through);
        return;
    }
    if (act == CLUSTER__BS_FORM) {
        ukko_logf(UKKO_LOG_INFO, "bootstrap",
                  UKKO_FIELDS(UKKO_FI("contact_points", v.points), UKKO_FI("expected", v.expected)),
                  "forming a new cluster: %s", b->why);
        cluster__mship_form(c->m);
        cluster__transport_rearm(c);
        finish(b, "formed the cluster");
        return;
    }
    if (now - b->last_log >= LOG_EVERY_MS) {
        b->last_log = now;
        ukko_logf(UKKO_LOG_INFO, "bootstrap", UKKO_FIELDS(UKKO_FI("contact_points", v.points),
                                                          UKKO_FI("answered", v.answered)),
                  "not a member yet: %s", b->why);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    cluster__bootstrap_t *b = w->data;
    if (b->done)
        return;
    int64_t now = ukko_now_ms();
    for (size_t i = 0; i < b->npts; i++)
        probe(b, b->pts[i], now);
    if (!b->expected && !b->asking_expected && b->bc->expected_contact_point_nr == 0 &&
        b->expected_tries > 0 && b->expected_tries < 10 && now >= b->next_expected)
        b->asking_expected = ukko_discovery_expected(b->d, on_expected, b) == 0;
    evaluate(b);
}

/* ---------------------------------------------------------- lifecycle */

cluster__bootstrap_t *cluster__bootstrap_new(ukko_cluster_t *c, const ukko_discovery_config_t *dc,
                                             int mgmt_port)
{
    cluster__bootstrap_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->c = c;
    b->loop = c->loop;
    b->bc = &c->cc->bootstrap;
    b->dc = dc;
    b->mgmt_port = mgmt_port > 0 ? mgmt_port : 8558;
    b->d = ukko_discovery_new(dc, c->loop, b->mgmt_port);
    if (!b->d) {
        free(b);
        return NULL;
    }
    ev_init(&b->tick, on_tick);
    b->tick.data = b;
    snprintf(b->why, sizeof(b->why), "bootstrap has not started");
    return b;
}

int cluster__bootstrap_start(cluster__bootstrap_t *b)
{
    b->running = true;
    b->started_at = b->last_log = ukko_now_ms();
    snprintf(b->why, sizeof(b->why), "discovering contact points");
    int rc = ukko_discovery_start(b->d, 0, on_points, b);
    if (rc < 0)
        return rc;
    if (b->bc->expected_contact_point_nr == 0)
        b->asking_expected = ukko_discovery_expected(b->d, on_expected, b) == 0;
    /* Probes are due every probe-interval; look twice as often, so that a
     * probe is never late by more than half an interval. */
    double iv = (double)b->bc->probe_interval_ms / 2000.0;
    ev_timer_set(&b->tick, iv, iv);
    ev_timer_start(b->loop, &b->tick);
    return 0;
}

void cluster__bootstrap_stop(cluster__bootstrap_t *b)
{
    if (!b)
        return;
    b->running = false;
    ev_timer_stop(b->loop, &b->tick);
    ukko_discovery_stop(b->d);
    for (size_t i = 0; i < b->npts; i++) {
        ukko_discovery_get_cancel(b->d, b->pts[i]->get);
        b->pts[i]->get = NULL;
    }
}

void cluster__bootstrap_free(cluster__bootstrap_t *b)
{
    if (!b)
        return;
    cluster__bootstrap_stop(b);
    for (size_t i = 0; i < b->npts; i++)
        point_free(b, b->pts[i]);
    free(b->pts);
    ukko_discovery_free(b->d);
    free(b);
}

const char *cluster__bootstrap_why(const cluster__bootstrap_t *b)
{
    return b->why;
}

void cluster__bootstrap_poke(cluster__bootstrap_t *b)
{
    if (b && !b->done && b->running && cluster__mship_in_cluster(b->c->m))
        evaluate(b);
}

void cluster__bootstrap_metrics(ukko_buf_t *out, const cluster__bootstrap_t *b)
{
    ukko_prom_family(out, "ukko_bootstrap_probes_total", "counter",
                     "GET /bootstrap/seed-nodes asked of contact points.");
    ukko_prom_sample(out, "ukko_bootstrap_probes_total", NULL, NULL, 0, (double)b->probes);
    ukko_prom_family(out, "ukko_bootstrap_probe_failures_total", "counter",
                     "Probes of contact points that got no usable answer.");
    ukko_prom_sample(out, "ukko_bootstrap_probe_failures_total", NULL, NULL, 0,
                     (double)b->probe_failures);
    ukko_prom_family(out, "ukko_bootstrap_contact_points", "gauge",
                     "Contact points the bootstrap knows (0 once done).");
    ukko_prom_sample(out, "ukko_bootstrap_contact_points", NULL, NULL, 0,
                     b->done ? 0 : (double)b->npts);
    ukko_prom_family(out, "ukko_bootstrap_expected_contact_points", "gauge",
                     "Expected contact points (0: not known; the stable margin decides).");
    ukko_prom_sample(out, "ukko_bootstrap_expected_contact_points", NULL, NULL, 0,
                     (double)(b->bc->expected_contact_point_nr > 0
                                  ? b->bc->expected_contact_point_nr
                                  : b->expected));
    ukko_prom_family(out, "ukko_bootstrap_done", "gauge", "1 once this node is a member.");
    ukko_prom_sample(out, "ukko_bootstrap_done", NULL, NULL, 0, b->done ? 1 : 0);
}

static void metrics(ukko_buf_t *out, void *ud)
{
    ukko_cluster_t *c = ud;
    if (c->bootstrap)
        cluster__bootstrap_metrics(out, c->bootstrap);
}

static void discovery_metrics(ukko_buf_t *out, void *ud)
{
    ukko_cluster_t *c = ud;
    if (c->bootstrap)
        ukko_discovery_metrics(out, c->bootstrap->d);
}

int ukko_cluster_use_discovery(ukko_cluster_t *c, const ukko_discovery_config_t *dc, int mgmt_port)
{
    if (c->bootstrap || c->started)
        return UKKO_EINVAL;
    if (ukko_discovery_method(dc) == UKKO_DISCOVERY_STATIC && dc->static_.contact_points.n == 0) {
        /* Nothing to discover: a node of its own, as with no seed nodes. */
        ukko_log(UKKO_LOG_INFO, "bootstrap",
                 "no discovery.static.contact-points and not in a pod (no "
                 "KUBERNETES_SERVICE_HOST): this node forms a cluster of its own");
        return 0;
    }
    c->bootstrap = cluster__bootstrap_new(c, dc, mgmt_port);
    if (!c->bootstrap) {
        ukko_log(UKKO_LOG_ERROR, "bootstrap",
                 "cannot set up discovery for the bootstrap (see above): set discovery.* or "
                 "cluster.seed-nodes");
        return UKKO_EINVAL;
    }
    ukko_node_add_metrics(c->node, discovery_metrics, c);
    ukko_node_add_metrics(c->node, metrics, c);
    return 0;
}
