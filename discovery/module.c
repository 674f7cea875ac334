/* module.c: discovery/ as a module of the program: its settings and
 * `ukko discover`, what this pod's discovery sees, for operators debugging
 * RBAC and labels, and for tests. stdout gets only the JSON lines. Main
 * thread. */
#include "discovery.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static int register_config(ukko_config_t *cfg, void *settings)
{
    return ukko_discovery_config_register(cfg, settings);
}

typedef struct discover_run {
    struct ev_loop *loop;
    bool once;
    int code;
} discover_run_t;

static void print_points(const ukko_discovery_result_t *res)
{
    if (res->stats) {
        const ukko_podlist_stats_t *st = res->stats;
        fprintf(stderr,
                "ukko discover: %zu contact point(s) from %zu pod(s) (left out: %zu terminating, "
                "%zu not Running, %zu without an IP, %zu with the container absent or waiting, "
                "%zu malformed; %zu on the default port) in %lld ms\n",
                res->points->n, st->pods, st->terminating, st->not_running, st->no_ip,
                st->waiting, st->bad, st->default_port, (long long)res->took_ms);
    }
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    if (ukko_discovery_points_json(res->points, &out) == 0)
        printf("%s\n", out.data);
    fflush(stdout);
    ukko_buf_destroy(&out);
}

static void on_discovered(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    discover_run_t *r = ud;
    if (res->status < 0) {
        fprintf(stderr, "ukko discover: lookup failed (%s): %s\n",
                ukko_discovery_failure_name(res->failure), res->error);
        r->code = 1;
    } else {
        print_points(res);
        r->code = 0;
    }
    if (r->once)
        ev_break(r->loop, EVBREAK_ALL);
}

static void on_discover_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static int cmd_discover(const ukko_cmd_t *cmd)
{
    bool once = false;
    for (int i = 0; i < cmd->argc; i++) {
        if (!strcmp(cmd->argv[i], "--once"))
            once = true;
        else
            return ukko_cmd_unknown_arg(cmd->argv[i]);
    }
    /* --once prints its outcome itself: only errors are logged unless asked.
     * The refresh reports only changes, so its failed lookups (warnings)
     * are what shows a failure there. */
    ukko_log_level_t quiet = once ? UKKO_LOG_ERROR : UKKO_LOG_WARN;
    ukko_log_setup(quiet, UKKO_LOG_TEXT);
    int rc = ukko_cmd_load_config(cmd);
    if (rc != 0)
        return rc;
    ukko_node_config_t *nc = ukko_host_settings(cmd->host, "node");
    const ukko_discovery_config_t *dc = ukko_host_settings(cmd->host, "discovery");
    if (cmd->log_level || cmd->log_format) {
        if (ukko_cmd_log_flags(cmd, nc) != 0)
            return 2;
        ukko_log_setup(cmd->log_level ? (ukko_log_level_t)nc->log_level : quiet,
                       (ukko_log_format_t)nc->log_format);
    }
    signal(SIGPIPE, SIG_IGN);
    discover_run_t r = {.loop = ev_default_loop(0), .once = once, .code = 1};
    int port = nc->mgmt_port > 0 ? (int)nc->mgmt_port : 8558;
    ukko_discovery_t *d = ukko_discovery_new(dc, r.loop, port);
    if (!d) {
        fprintf(stderr, "ukko discover: cannot set up discovery (see the message above)\n");
        return 1;
    }
    ev_signal sig_int, sig_term;
    ev_signal_init(&sig_int, on_discover_signal, SIGINT);
    ev_signal_init(&sig_term, on_discover_signal, SIGTERM);
    ev_signal_start(r.loop, &sig_int);
    ev_signal_start(r.loop, &sig_term);
    rc = once ? ukko_discovery_lookup(d, on_discovered, &r)
              : ukko_discovery_start(d, 0, on_discovered, &r);
    if (rc == 0)
        ev_run(r.loop, 0);
    if (!once)
        r.code = rc == 0 ? 0 : 1; /* a refresh ends only by a signal */
    ev_signal_stop(r.loop, &sig_int);
    ev_signal_stop(r.loop, &sig_term);
    ukko_discovery_free(d);
    return r.code;
}

static const ukko_subcommand_t commands[] = {
    {"discover",
     "  ukko discover --once [--config FILE]   the contact points this pod would see,\n"
     "                                         as one JSON line (exit 1 on failure);\n"
     "                                         without --once, a line per change\n",
     cmd_discover, false},
    {NULL, NULL, NULL, false},
};

const ukko_module_t ukko_discovery_module = {
    .name = "discovery",
    .settings_size = sizeof(ukko_discovery_config_t),
    .register_config = register_config,
    .commands = commands,
};
