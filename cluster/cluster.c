/* cluster.c: the membership of a real node: reads the keyring (refusing to
 * run without one unless cluster.insecure), resolves its own address and the
 * seed nodes, gives the core a real clock and CSPRNG, logs member changes
 * and hands them to event subscribers, and answers the node's readiness
 * check. Loop thread only. Invariant: no packet is sent or accepted before
 * the keyring is loaded. */
#include "bootstrap.h"
#include "runtime.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int64_t env_now(void *ud)
{
    (void)ud;
    return ukko_now_ms();
}

static int64_t env_wall(void *ud)
{
    (void)ud;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void env_random(void *ud, void *p, size_t n)
{
    (void)ud;
    if (RAND_bytes(p, (int)n) != 1) {
        /* No randomness means no unique uid: nothing safe to do. */
        ukko_log(UKKO_LOG_ERROR, "cluster", "OpenSSL RAND_bytes failed: cannot pick a uid");
        abort();
    }
}

static void env_changed(void *ud, uint32_t ident, int old_status, int old_live, int status,
                        int live)
{
    ukko_cluster_t *c = ud;
    if (!c->m)
        return; /* the core adding itself while being created */
    char name[160];
    cluster__node_name(c->cc->name, c->ids, ident, name, sizeof(name));
    bool self = ident == cluster__mship_self(c->m);
    if (c->events)
        cluster__events_changed(c->events, ident, old_status, old_live, status, live);
    if (self && status != old_status)
        cluster__leave_self_changed(c, old_status, status);
    if (status != old_status) {
        ukko_logf(UKKO_LOG_INFO, "cluster",
                  UKKO_FIELDS(UKKO_FS("member", name), UKKO_FS("status", ukko_member_status_name(status)),
                              UKKO_FB("self", self)),
                  "%s%s is %s", self ? "this node " : "member ", name,
                  ukko_member_status_name(status));
    } else if (live != old_live && status < UKKO_MEMBER_DOWN) {
        ukko_logf(live == CLUSTER__SUSPECT ? UKKO_LOG_WARN : UKKO_LOG_INFO, "cluster",
                  UKKO_FIELDS(UKKO_FS("member", name)), "member %s is %s", name,
                  live == CLUSTER__SUSPECT ? "suspected (unreachable)" : "reachable again");
    }
}

/* In a pod, the address its hostname resolves to (the kubelet writes the
 * pod's name and IP into /etc/hosts); elsewhere this host's first
 * non-loopback IPv4 address, as Pekko's default hostname does; 127.0.0.1
 * when there is none. */
static void default_host(char *out, size_t outlen)
{
    snprintf(out, outlen, "127.0.0.1");
    const char *in_pod = getenv("KUBERNETES_SERVICE_HOST");
    char name[256];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    if (in_pod && *in_pod && gethostname(name, sizeof(name)) == 0 &&
        getaddrinfo(name, NULL, &hints, &res) == 0 && res) {
        for (struct addrinfo *r = res; r; r = r->ai_next) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof(ss));
            memcpy(&ss, r->ai_addr, r->ai_addrlen < sizeof(ss) ? r->ai_addrlen : sizeof(ss));
            cluster__addr_t a;
            cluster__addr_from_sockaddr(&ss, &a);
            char h[64];
            cluster__addr_host(&a, h, sizeof(h));
            if (strcmp(h, "127.0.0.1") && strcmp(h, "::1") && strncmp(h, "127.", 4)) {
                snprintf(out, outlen, "%s", h);
                freeaddrinfo(res);
                return;
            }
        }
        freeaddrinfo(res);
    }
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) < 0)
        return;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) ||
            !(i->ifa_flags & IFF_UP))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out, (socklen_t)outlen);
        break;
    }
    freeifaddrs(ifa);
}

/* "host:port" with host a name or an address; names are resolved once,
 * here, at start (blocking, like reading the config). */
static int resolve(const char *s, uint16_t default_port, cluster__addr_t *a)
{
    if (cluster__addr_parse(s, default_port, a) == 0)
        return 0;
    char host[256];
    const char *colon = strrchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n >= sizeof(host))
        return UKKO_EINVAL;
    snprintf(host, sizeof(host), "%.*s", (int)n, s);
    long port = colon ? strtol(colon + 1, NULL, 10) : default_port;
    if (port < 1 || port > 65535)
        return UKKO_EINVAL;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return UKKO_ENOENT;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, res->ai_addr, res->ai_addrlen < sizeof(ss) ? res->ai_addrlen : sizeof(ss));
    freeaddrinfo(res);
    cluster__addr_from_sockaddr(&ss, a);
    a->port = (uint16_t)port;
    return 0;
}

static void on_keyring_change(struct ev_loop *loop, ev_stat *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    char why[256];
    cluster__keyring_t next;
    memset(&next, 0, sizeof(next));
    if (cluster__keyring_load(&next, c->cc->keyring_path, why, sizeof(why)) < 0) {
        c->keyring_errors++;
        ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("path", c->cc->keyring_path)),
                  "keyring %s changed but cannot be used: %s; keeping the keys in use",
                  c->cc->keyring_path, why);
        return;
    }
    c->keyring = next;
    c->keyring_reloads++;
    ukko_logf(UKKO_LOG_INFO, "cluster",
              UKKO_FIELDS(UKKO_FS("path", c->cc->keyring_path), UKKO_FI("keys", next.nkeys)),
              "keyring reloaded: %zu key(s), the first now seals what this node sends",
              next.nkeys);
}

/* Before the loop sleeps: what the membership changed in this turn goes to
 * the subscribers, outside the core's call chain. */
static void on_events_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    if (cluster__events_pending(c->events))
        cluster__events_flush(c->events);
}

int ukko_cluster_subscribe(ukko_cluster_t *c, ukko_cluster_event_fn fn, void *ud,
                           ukko_cluster_sub_t **out)
{
    int rc = cluster__events_subscribe(c->events, fn, ud, out);
    if (rc == 0 && !c->stopped && !ev_is_active(&c->events_flush))
        ev_prepare_start(c->loop, &c->events_flush);
    return rc;
}

void ukko_cluster_unsubscribe(ukko_cluster_t *c, ukko_cluster_sub_t *sub)
{
    cluster__events_unsubscribe(c->events, sub);
}

bool ukko_cluster_converged(const ukko_cluster_t *c)
{
    return cluster__events_converged(c->events);
}

ukko_cluster_t *ukko_cluster_new(ukko_node_t *node, const ukko_cluster_config_t *cc)
{
    ukko_cluster_t *c = calloc(1, sizeof(*c));
    if (!c) {
        ukko_log(UKKO_LOG_ERROR, "cluster", "out of memory");
        return NULL;
    }
    c->node = node;
    c->loop = ukko_node_loop(node);
    c->cc = cc;
    c->udp_fd = c->tcp_fd = -1;
    cluster__params_from_config(&c->params, cc);
    char why[256];
    cluster__addr_t *seeds = NULL;
    if (cluster__sbr_params_from_config(&c->params.sbr, &cc->sbr, why, sizeof(why)) < 0) {
        ukko_log(UKKO_LOG_ERROR, "cluster", "%s", why);
        goto fail;
    }

    if (cc->keyring_path) {
        if (cluster__keyring_load(&c->keyring, cc->keyring_path, why, sizeof(why)) < 0) {
            ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("path", cc->keyring_path)),
                      "cluster.keyring-path = \"%s\": %s", cc->keyring_path, why);
            goto fail;
        }
        if (cc->insecure)
            ukko_log(UKKO_LOG_WARN, "cluster",
                     "cluster.insecure is true but a keyring is set: the keyring wins");
    } else if (cc->insecure) {
        c->keyring.insecure = true;
        ukko_log(UKKO_LOG_WARN, "cluster",
                 "INSECURE: cluster.insecure = true: gossip is neither encrypted nor "
                 "authenticated; anyone who can reach the cluster port can join or forge "
                 "members. Set cluster.keyring-path (make a key with `openssl rand -base64 32`) "
                 "for anything but a local test.");
    } else {
        ukko_log(UKKO_LOG_ERROR, "cluster",
                 "not starting: cluster.keyring-path is not set. Every gossip packet is "
                 "encrypted with a shared key: write [\"<key>\"] with a key from `openssl rand "
                 "-base64 32` to a file (a Kubernetes Secret) and set cluster.keyring-path to "
                 "it, or set cluster.insecure = true for a local test");
        goto fail;
    }

    char host[256];
    if (cc->hostname && *cc->hostname)
        snprintf(host, sizeof(host), "%s", cc->hostname);
    else
        default_host(host, sizeof(host));
    char self[300];
    snprintf(self, sizeof(self), strchr(host, ':') ? "[%s]:%lld" : "%s:%lld", host,
             (long long)cc->port);
    if (resolve(self, (uint16_t)cc->port, &c->self) < 0) {
        ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("hostname", host)),
                  "cluster.hostname = \"%s\" is not an address of this host (nor a name that "
                  "resolves): set it to the pod IP or an address of an interface",
                  host);
        goto fail;
    }
    size_t nseeds = 0;
    seeds = calloc(cc->seed_nodes.n ? cc->seed_nodes.n : 1, sizeof(*seeds));
    if (!seeds)
        goto fail;
    for (size_t i = 0; i < cc->seed_nodes.n; i++) {
        if (resolve(cc->seed_nodes.v[i], 7355, &seeds[nseeds]) < 0) {
            ukko_logf(UKKO_LOG_WARN, "cluster", UKKO_FIELDS(UKKO_FS("seed", cc->seed_nodes.v[i])),
                      "cluster.seed-nodes: \"%s\" does not resolve; skipped",
                      cc->seed_nodes.v[i]);
            continue;
        }
        nseeds++;
    }
    /* The roles as "a,b", the form the wire and the core use. */
    char roles[UKKO_WIRE_ROLES_BUF] = "";
    for (size_t i = 0; i < cc->roles.n; i++) {
        size_t l = strlen(roles);
        snprintf(roles + l, sizeof(roles) - l, "%s%s", l ? "," : "", cc->roles.v[i]);
    }
    c->ids = cluster__ids_new();
    cluster__env_t env = {c,          env_now,           env_wall,   env_random,
                          cluster__env_send, cluster__env_sync, env_changed};
    c->m = c->ids ? cluster__mship_new(&c->params, &env, c->ids, &c->self, roles, seeds, nseeds)
                  : NULL;
    free(seeds);
    seeds = NULL;
    /* Changes pile up only within one turn of the loop: a full-state sync
     * of every member is the most one turn brings. */
    c->events = c->m ? cluster__events_new(c->m, cc->name, 4 * (size_t)c->params.max_members + 1024)
                     : NULL;
    if (!c->m || !c->events) {
        ukko_log(UKKO_LOG_ERROR, "cluster", "out of memory creating the membership");
        goto fail;
    }
    ev_prepare_init(&c->events_flush, on_events_flush);
    c->events_flush.data = c;
    return c;
fail:
    free(seeds);
    ukko_cluster_free(c);
    return NULL;
}

int ukko_cluster_start(ukko_cluster_t *c)
{
    if (c->bootstrap && c->cc->seed_nodes.n) {
        ukko_log(UKKO_LOG_INFO, "cluster",
                 "cluster.seed-nodes is set: joining through it, not through discovery");
        cluster__bootstrap_free(c->bootstrap);
        c->bootstrap = NULL;
    }
    int rc = cluster__transport_start(c);
    if (rc < 0)
        return rc;
    if (c->cc->keyring_path) {
        ev_stat_init(&c->keyring_watch, on_keyring_change, c->cc->keyring_path, 1.0);
        c->keyring_watch.data = c;
        ev_stat_start(c->loop, &c->keyring_watch);
        c->keyring_watching = true;
    }
    c->started = true;
    if (c->bootstrap) {
        cluster__mship_start_wait(c->m);
        rc = cluster__bootstrap_start(c->bootstrap);
        if (rc < 0) {
            ukko_log(UKKO_LOG_ERROR, "cluster", "cannot start the bootstrap through discovery");
            return rc;
        }
    } else {
        cluster__mship_start(c->m);
    }
    char name[160], uid[33];
    cluster__node_name(c->cc->name, c->ids, cluster__mship_self(c->m), name, sizeof(name));
    cluster__uid_hex(cluster__ids_at(c->ids, cluster__mship_self(c->m))->uid, uid);
    ukko_logf(UKKO_LOG_INFO, "cluster",
              UKKO_FIELDS(UKKO_FS("node", name), UKKO_FS("uid", uid),
                          UKKO_FI("seeds", c->cc->seed_nodes.n),
                          UKKO_FB("bootstrap", c->bootstrap != NULL),
                          UKKO_FB("encrypted", !c->keyring.insecure)),
              "membership started as %s (uid %s)", name, uid);
    cluster__transport_rearm(c);
    return 0;
}

void ukko_cluster_stop(ukko_cluster_t *c)
{
    if (!c || c->stopped)
        return;
    if (c->started && cluster__mship_self_status(c->m) < UKKO_MEMBER_DOWN)
        cluster__mship_leave(c->m);
    c->stopped = true;
    ev_prepare_stop(c->loop, &c->events_flush);
    cluster__bootstrap_stop(c->bootstrap);
    ev_timer_stop(c->loop, &c->leave_flush);
    ev_timer_stop(c->loop, &c->leave_deadline);
    if (c->keyring_watching) {
        ev_stat_stop(c->loop, &c->keyring_watch);
        c->keyring_watching = false;
    }
    cluster__transport_stop(c);
}

void ukko_cluster_free(ukko_cluster_t *c)
{
    if (!c)
        return;
    ukko_cluster_stop(c);
    cluster__bootstrap_free(c->bootstrap);
    cluster__events_free(c->events);
    cluster__mship_free(c->m);
    cluster__ids_free(c->ids);
    memset(&c->keyring, 0, sizeof(c->keyring));
    free(c);
}

int ukko_cluster_self_status(const ukko_cluster_t *c)
{
    return cluster__mship_self_status(c->m);
}

bool ukko_cluster_ready_check(void *ud, char *why, size_t whylen)
{
    ukko_cluster_t *c = ud;
    int s = cluster__mship_self_status(c->m);
    if (c->started && !c->stopped && (s == UKKO_MEMBER_UP || s == UKKO_MEMBER_WEAKLY_UP))
        return true;
    if (!c->started || c->stopped)
        snprintf(why, whylen, "membership is not running");
    else if (!cluster__mship_in_cluster(c->m) && c->bootstrap)
        snprintf(why, whylen, "not yet a member: bootstrap: %s",
                 cluster__bootstrap_why(c->bootstrap));
    else if (!cluster__mship_in_cluster(c->m))
        snprintf(why, whylen, "not yet a member: joining through cluster.seed-nodes");
    else if (s == UKKO_MEMBER_JOINING)
        snprintf(why, whylen, "Joining: waiting for the leader to see the view converge");
    else if (cluster__mship_down_reason(c->m))
        snprintf(why, whylen, "%s", cluster__mship_down_reason(c->m));
    else
        snprintf(why, whylen, "this node is %s", ukko_member_status_name(s));
    return false;
}

cluster__mship_t *cluster__mship_of(ukko_cluster_t *c)
{
    return c->m;
}

const char *cluster__name_of(const ukko_cluster_t *c)
{
    return c->cc->name;
}

uint64_t cluster__keyring_reloads(const ukko_cluster_t *c)
{
    return c->keyring_reloads;
}
