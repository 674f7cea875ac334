/* node.c: one node's lifecycle on its libev loop: the management server and
 * its built-in routes (/alive, /ready, /startup, /metrics), health checks,
 * signals, and the orderly stop (its phases are shutdown.c's) that modules
 * hang their tasks on. Loop thread only. Invariant: once stopping, /ready
 * never answers 200 again. */
#include "http_internal.h"
#include "shutdown.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_CHECKS 16
#define MAX_COLLECTORS 32

static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_choices[] = {"json", "text", NULL};

static int check_host(const cJSON *v, char *why, size_t whylen)
{
    if (!cJSON_IsString(v) || !*v->valuestring) {
        snprintf(why, whylen, "an address to listen on, e.g. \"0.0.0.0\", \"::\" or \"127.0.0.1\"");
        return UKKO_EINVAL;
    }
    return 0;
}

#define NC(f) offsetof(ukko_node_config_t, f)
static const ukko_cfg_key_t node_keys[] = {
    {"log.level", UKKO_CFG_ENUM, NC(log_level), "\"info\"", 0, 0, level_choices, NULL,
     "Lowest level logged: debug, info, warn or error."},
    {"log.format", UKKO_CFG_ENUM, NC(log_format), "\"json\"", 0, 0, format_choices, NULL,
     "json (one object per line, for log shippers) or text (for people)."},
    {"management.hostname", UKKO_CFG_STRING, NC(mgmt_host), "\"0.0.0.0\"", 0, 0, NULL, check_host,
     "Address the management HTTP server listens on."},
    {"management.port", UKKO_CFG_INT, NC(mgmt_port), "8558", 0, 65535, NULL, NULL,
     "Port of the management HTTP server (probes, /metrics, cluster routes); 0 picks a free one."},
    {"management.idle-timeout", UKKO_CFG_DURATION, NC(mgmt_idle_timeout_ms), "\"60s\"", 100,
     3600000, NULL, NULL, "A keep-alive connection with no request for this long is closed."},
    {"management.request-timeout", UKKO_CFG_DURATION, NC(mgmt_request_timeout_ms), "\"10s\"", 100,
     600000, NULL, NULL,
     "A request must arrive whole within this time of its first byte (else 408), and a "
     "response be read within it."},
    {"management.max-connections", UKKO_CFG_INT, NC(mgmt_max_connections), "256", 1, 65536, NULL,
     NULL, "Connections beyond this get 503 and are closed."},
    {"management.max-request-line", UKKO_CFG_INT, NC(mgmt_max_request_line), "8192", 256,
     1048576, NULL, NULL, "Longest method and URL, in bytes (else 414)."},
    {"management.max-header-bytes", UKKO_CFG_INT, NC(mgmt_max_header_bytes), "16384", 1024,
     1048576, NULL, NULL, "Largest header block, in bytes (else 431)."},
    {"management.max-body-bytes", UKKO_CFG_INT, NC(mgmt_max_body_bytes), "65536", 0, 67108864,
     NULL, NULL, "Largest request body, in bytes (else 413)."},
    {"management.token-path", UKKO_CFG_STRING, NC(mgmt_token_path), "null", 0, 0, NULL, NULL,
     "File holding the bearer token that operations (PUT /cluster/members/...) need; null "
     "disables them."},
    {"cluster.shutdown-timeout", UKKO_CFG_DURATION, NC(shutdown_timeout_ms), "\"30s\"", 100,
     3600000, NULL, NULL,
     "Longest orderly stop after SIGTERM (keep it under the pod's "
     "terminationGracePeriodSeconds)."},
};
#undef NC

int ukko_node_config_register(ukko_config_t *cfg, ukko_node_config_t *nc)
{
    return ukko_config_add(cfg, node_keys, sizeof(node_keys) / sizeof(node_keys[0]), nc);
}

typedef struct check {
    ukko_check_kind_t kind;
    char name[48];
    ukko_check_fn fn;
    void *ud;
} check_t;

struct ukko_node {
    const ukko_node_config_t *nc;
    struct ev_loop *loop;
    ukko_http_server_t *http;
    ev_signal sig_term, sig_int, sig_hup;
    ukko__stop_t stop;
    check_t checks[MAX_CHECKS];
    size_t nchecks;
    ukko_check_fn member_fn;
    void *member_ud;
    struct {
        ukko_metrics_fn fn;
        void *ud;
    } collectors[MAX_COLLECTORS];
    size_t ncollectors;
    bool started, stopping;
    int exit_code;
    char token[512]; /* management token, as last read */
    struct stat token_st;
    bool token_ok;
    double start_wall; /* seconds since the epoch */
    int64_t start_mono_ms;
};

void ukko__process_metrics(ukko_buf_t *out, void *ud);

struct ev_loop *ukko_node_loop(ukko_node_t *node)
{
    return node->loop;
}

ukko_http_server_t *ukko_node_http(ukko_node_t *node)
{
    return node->http;
}

bool ukko_node_stopping(const ukko_node_t *node)
{
    return node->stopping;
}

int64_t ukko_node_stop_remaining_ms(const ukko_node_t *node)
{
    if (!node->stopping)
        return node->nc->shutdown_timeout_ms;
    int64_t left = node->stop.deadline_ms - ukko_now_ms();
    return left > 0 ? left : 0;
}

ukko_stop_reason_t ukko_node_stop_reason(const ukko_node_t *node)
{
    return node->stopping ? node->stop.reason : UKKO_STOP_ORDERLY;
}

void ukko_node_add_check(ukko_node_t *node, ukko_check_kind_t kind, const char *name,
                         ukko_check_fn fn, void *ud)
{
    if (node->nchecks == MAX_CHECKS) {
        ukko_log(UKKO_LOG_ERROR, "node", "too many health checks: \"%s\" not added", name);
        return;
    }
    check_t *c = &node->checks[node->nchecks++];
    c->kind = kind;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->fn = fn;
    c->ud = ud;
}

void ukko_node_set_membership_check(ukko_node_t *node, ukko_check_fn fn, void *ud)
{
    node->member_fn = fn;
    node->member_ud = ud;
}

void ukko_node_add_metrics(ukko_node_t *node, ukko_metrics_fn fn, void *ud)
{
    if (node->ncollectors == MAX_COLLECTORS) {
        ukko_log(UKKO_LOG_ERROR, "node", "too many metrics collectors: one not added");
        return;
    }
    node->collectors[node->ncollectors].fn = fn;
    node->collectors[node->ncollectors].ud = ud;
    node->ncollectors++;
}

int ukko_node_add_stop_task(ukko_node_t *node, ukko_phase_t phase, const char *name,
                            ukko_stop_task_fn fn, void *ud)
{
    return ukko__stop_add(&node->stop, phase, name, fn, ud);
}

void ukko_node_set_phase_timeout(ukko_node_t *node, ukko_phase_t phase, int64_t ms)
{
    if ((int)phase >= 0 && phase < UKKO_PHASE_COUNT && ms > 0)
        node->stop.phase_timeout_ms[phase] = ms;
}

/* ------------------------------------------------------------- tokens */

/* Re-reads the token file when its identity, size or mtime changed. */
static void refresh_token(ukko_node_t *node)
{
    struct stat st;
    const char *path = node->nc->mgmt_token_path;
    if (stat(path, &st) < 0) {
        if (node->token_ok)
            ukko_log(UKKO_LOG_WARN, "node",
                     "management.token-path %s: %s: operations are refused until it exists",
                     path, strerror(errno));
        node->token_ok = false;
        memset(&node->token_st, 0, sizeof(node->token_st));
        return;
    }
    if (node->token_ok && st.st_ino == node->token_st.st_ino &&
        st.st_size == node->token_st.st_size &&
        st.st_mtim.tv_sec == node->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == node->token_st.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(node->token, 1, sizeof(node->token) - 1, f) : 0;
    if (f)
        fclose(f);
    node->token[n] = '\0';
    while (n && (node->token[n - 1] == '\n' || node->token[n - 1] == '\r' ||
                 node->token[n - 1] == ' '))
        node->token[--n] = '\0';
    node->token_ok = n > 0;
    node->token_st = st;
    if (!node->token_ok)
        ukko_log(UKKO_LOG_WARN, "node",
                 "management.token-path %s is empty or unreadable: operations are refused", path);
}

/* Compares in time independent of where the strings differ. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

bool ukko_node_authorize(ukko_node_t *node, const ukko_http_request_t *req,
                         ukko_http_response_t *res)
{
    if (!node->nc->mgmt_token_path) {
        ukko_http_reply(res, 401,
                        "operations are disabled: set management.token-path to a file holding a "
                        "token (e.g. a mounted Secret) and send it as Authorization: Bearer\n");
        return false;
    }
    refresh_token(node);
    const char *auth = ukko_http_header(req, "authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7)) {
        ukko_http_reply(res, 401, "missing Authorization: Bearer <token> (the token in %s)\n",
                        node->nc->mgmt_token_path);
        return false;
    }
    const char *given = auth + 7;
    while (*given == ' ')
        given++;
    if (!node->token_ok || !same_secret(given, node->token)) {
        ukko_logf(UKKO_LOG_WARN, "node", UKKO_FIELDS(UKKO_FS("peer", req->peer)),
                  "refused %s %s: wrong or missing management token", req->method, req->path);
        ukko_http_reply(res, 401, "wrong token: it must match the token in %s\n",
                        node->nc->mgmt_token_path);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------- routes */

static void route_alive(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    (void)ud;
    ukko_http_reply(res, 200, "OK");
}

static bool default_membership(void *ud, char *why, size_t whylen)
{
    (void)ud;
    snprintf(why, whylen, "not a member of a cluster (membership has not started)");
    return false;
}

/* Runs the checks of one kind; the 500 body names every failing one. */
static void run_checks(ukko_node_t *node, ukko_check_kind_t kind, ukko_http_response_t *res)
{
    ukko_buf_t failed;
    ukko_buf_init(&failed, 16384);
    char why[256];
    if (node->stopping) {
        ukko_buf_puts(&failed, "node: stopping (orderly shutdown in progress)\n");
    } else if (!node->started) {
        ukko_buf_puts(&failed, "node: still starting\n");
    }
    if (kind == UKKO_CHECK_READINESS) {
        why[0] = '\0';
        ukko_check_fn fn = node->member_fn ? node->member_fn : default_membership;
        if (!fn(node->member_ud, why, sizeof(why)))
            ukko_buf_printf(&failed, "cluster-membership: %s\n", why);
    }
    for (size_t i = 0; i < node->nchecks; i++) {
        if (node->checks[i].kind != kind)
            continue;
        why[0] = '\0';
        if (!node->checks[i].fn(node->checks[i].ud, why, sizeof(why)))
            ukko_buf_printf(&failed, "%s: %s\n", node->checks[i].name, *why ? why : "failed");
    }
    if (failed.len)
        ukko_http_reply(res, 500, "Not Healthy:\n%s", failed.data);
    else
        ukko_http_reply(res, 200, "OK");
    ukko_buf_destroy(&failed);
}

static void route_ready(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    run_checks(ud, UKKO_CHECK_READINESS, res);
}

static void route_startup(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    run_checks(ud, UKKO_CHECK_STARTUP, res);
}

static void route_metrics(const ukko_http_request_t *req, ukko_http_response_t *res, void *ud)
{
    (void)req;
    ukko_node_t *node = ud;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    ukko__process_metrics(&res->body, &node->start_wall);
    ukko_http__server_metrics(node->http, &res->body);
    for (size_t i = 0; i < node->ncollectors; i++)
        node->collectors[i].fn(&res->body, node->collectors[i].ud);
}

/* ------------------------------------------------------------ stopping */

/* The stop's end (shutdown.c calls it): the loop ends with code. */
static void finish_stop(ukko_node_t *node, int code)
{
    node->exit_code = code;
    ev_break(node->loop, EVBREAK_ALL);
}

void ukko_node_stop_for(ukko_node_t *node, ukko_stop_reason_t reason, const char *why)
{
    node->stopping = true; /* /ready is 500 from here on */
    ukko__stop_begin(&node->stop, reason, why);
}

void ukko_node_stop(ukko_node_t *node, const char *why)
{
    ukko_node_stop_for(node, UKKO_STOP_ORDERLY, why);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_node_t *node = w->data;
    const char *name = w->signum == SIGTERM ? "SIGTERM" : w->signum == SIGINT ? "SIGINT" : "SIGHUP";
    if (w->signum == SIGHUP) {
        ukko_log(UKKO_LOG_WARN, "node",
                 "received SIGHUP: ignored (ukko does not reload its config; restart the node "
                 "to apply changes)");
        return;
    }
    if (node->stopping) {
        char where[480];
        ukko__stop_describe(&node->stop, where, sizeof(where));
        ukko_log(UKKO_LOG_WARN, "node", "received %s again while stopping: exiting now%s%s%s",
                 name, *where ? " (" : "", where, *where ? ")" : "");
        ukko__stop_abort(&node->stop);
        finish_stop(node, 1);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "received %s", name);
    ukko_node_stop(node, why);
}

/* ------------------------------------------------------------ lifecycle */

ukko_node_t *ukko_node_new(const ukko_node_config_t *nc, struct ev_loop *loop)
{
    ukko_node_t *node = calloc(1, sizeof(*node));
    if (!node)
        return NULL;
    node->nc = nc;
    node->loop = loop ? loop : ev_default_loop(0);
    node->start_mono_ms = ukko_now_ms();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    node->start_wall = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    node->http = ukko_http__server_new(node->loop, nc);
    if (!node->http) {
        free(node);
        return NULL;
    }
    ev_signal_init(&node->sig_term, on_signal, SIGTERM);
    ev_signal_init(&node->sig_int, on_signal, SIGINT);
    ev_signal_init(&node->sig_hup, on_signal, SIGHUP);
    node->sig_term.data = node->sig_int.data = node->sig_hup.data = node;
    ukko__stop_init(&node->stop, node->loop, node, finish_stop, nc->shutdown_timeout_ms);

    ukko_http_route(node->http, "GET", "/alive", route_alive, node);
    ukko_http_route(node->http, "GET", "/ready", route_ready, node);
    ukko_http_route(node->http, "GET", "/startup", route_startup, node);
    ukko_http_route(node->http, "GET", "/metrics", route_metrics, node);
    return node;
}

int ukko_node_start(ukko_node_t *node)
{
    /* Signals first, so a SIGTERM during start-up is an orderly stop too. */
    signal(SIGPIPE, SIG_IGN);
    ev_signal_start(node->loop, &node->sig_term);
    ev_signal_start(node->loop, &node->sig_int);
    ev_signal_start(node->loop, &node->sig_hup);
    int rc = ukko_http__server_listen(node->http, node->nc->mgmt_host, (int)node->nc->mgmt_port);
    if (rc < 0)
        return rc;
    node->started = true;
    ukko_logf(UKKO_LOG_INFO, "node",
              UKKO_FIELDS(UKKO_FS("version", UKKO_VERSION),
                          UKKO_FS("management", ukko_http__server_address(node->http)),
                          UKKO_FI("pid", getpid()),
                          UKKO_FI("startup_ms", ukko_now_ms() - node->start_mono_ms)),
              "node started: management HTTP on http://%s (/alive /ready /startup /metrics)",
              ukko_http__server_address(node->http));
    return 0;
}

int ukko_node_run(ukko_node_t *node)
{
    ev_run(node->loop, 0);
    return node->exit_code;
}

void ukko_node_free(ukko_node_t *node)
{
    if (!node)
        return;
    ev_signal_stop(node->loop, &node->sig_term);
    ev_signal_stop(node->loop, &node->sig_int);
    ev_signal_stop(node->loop, &node->sig_hup);
    ukko__stop_destroy(&node->stop);
    ukko_http__server_free(node->http);
    free(node);
}
