/* main.c: the `ukko` program: parses the command line, loads and checks the
 * config, wires the libraries together and runs the node. Main thread only.
 * Exit codes: 0 orderly stop, 1 runtime failure, 2 bad usage or config. */
#include "ukko.h"
#ifdef HAVE_UKKO_CLUSTER
#include "cluster.h"
#endif

#include "ctl.h"
#ifdef HAVE_UKKO_STREAMS
#include "streams.h"
#endif
#ifdef HAVE_UKKO_DISCOVERY
#include "discovery.h"

#include <ev.h>
#include <signal.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Every module's settings, registered into one config. */
typedef struct settings {
    ukko_node_config_t node;
    ukko_actor_config_t actors;
#ifdef HAVE_UKKO_DISCOVERY
    ukko_discovery_config_t discovery;
#endif
#ifdef HAVE_UKKO_CLUSTER
    ukko_cluster_config_t cluster;
#endif
} settings_t;

static void usage(FILE *out)
{
    fprintf(out,
            "ukko %s: a cluster-node runtime for Kafka services on Kubernetes\n"
            "\n"
            "Usage:\n"
            "  ukko [run] [--config FILE] [options]   run a node (the default command)\n"
            "  ukko check-config FILE                 print the effective config as JSON,\n"
            "                                         or every problem in it (exit 2)\n"
            "  ukko config-keys [--markdown|--example]\n"
            "                                         document every config key\n"
            "  ukko discover --once [--config FILE]   the contact points this pod would see,\n"
            "                                         as one JSON line (exit 1 on failure);\n"
            "                                         without --once, a line per change\n"
            "  ukko members [--url URL]               the cluster's members, as a node sees them\n"
            "  ukko leave ADDRESS [--url URL] [--token-file F]\n"
            "                                         ask a member to leave gracefully\n"
            "  ukko down ADDRESS [--url URL] [--token-file F]\n"
            "                                         mark an unreachable member Down\n"
            "  ukko dev-kafka [--topic NAME:N]...     a local mock Kafka broker (dev-kafka --help)\n"
            "  ukko --help | --version\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE      JSON config file (see ukko.example.json)\n"
            "      --log-format FMT   json (default) or text\n"
            "      --log-level LEVEL  debug, info (default), warn or error\n"
            "\n"
            "Every config key can be set by environment: UKKO_ + the key path in upper\n"
            "case with '.' and '-' as '_', e.g. UKKO_MANAGEMENT_PORT=8600.\n"
            "Flags override the environment, which overrides the file.\n"
            "\n"
            "Management routes (default 0.0.0.0:8558): /alive /ready /startup /metrics\n",
            UKKO_VERSION);
}

static int register_all(ukko_config_t *cfg, settings_t *s)
{
    int rc = ukko_node_config_register(cfg, &s->node);
    if (rc == 0)
        rc = ukko_actor_config_register(cfg, &s->actors);
#ifdef HAVE_UKKO_DISCOVERY
    if (rc == 0)
        rc = ukko_discovery_config_register(cfg, &s->discovery);
#endif
#ifdef HAVE_UKKO_CLUSTER
    if (rc == 0)
        rc = ukko_cluster_config_register(cfg, &s->cluster);
#endif
    return rc;
}

typedef struct args {
    const char *command;
    const char *config;
    const char *log_format;
    const char *log_level;
    const char *doc_format; /* config-keys: "markdown" or "example" */
    bool once;              /* discover: one lookup, no retries */
    const char *operand;    /* leave/down: the member's address */
    const char *url;        /* members/leave/down: the node's management URL */
    const char *token_file; /* leave/down: the management token */
} args_t;

static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof(*a));
    a->command = "run";
    int i = 1;
    if (i < argc && argv[i][0] != '-')
        a->command = argv[i++];
    for (; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = NULL;
        if (!strcmp(arg, "-c") || !strcmp(arg, "--config"))
            dst = &a->config;
        else if (!strcmp(arg, "--log-format"))
            dst = &a->log_format;
        else if (!strcmp(arg, "--log-level"))
            dst = &a->log_level;
        else if (!strcmp(arg, "--url"))
            dst = &a->url;
        else if (!strcmp(arg, "--token-file"))
            dst = &a->token_file;
        else if ((!strcmp(a->command, "leave") || !strcmp(a->command, "down")) && arg[0] != '-' &&
                 !a->operand)
            a->operand = arg;
        else if (!strcmp(arg, "--once") && !strcmp(a->command, "discover"))
            a->once = true;
        else if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            a->command = "help";
        else if (!strcmp(arg, "-V") || !strcmp(arg, "--version"))
            a->command = "version";
        else if (!strcmp(a->command, "check-config") && arg[0] != '-' && !a->config)
            a->config = arg;
        else if (!strcmp(a->command, "config-keys") &&
                 (!strcmp(arg, "--markdown") || !strcmp(arg, "--example")))
            a->doc_format = arg + 2;
        else {
            fprintf(stderr, "ukko: unknown argument \"%s\" (see ukko --help)\n", arg);
            return -1;
        }
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ukko: %s needs a value (see ukko --help)\n", arg);
                return -1;
            }
            *dst = argv[++i];
        }
    }
    return 0;
}

/* Flags go last: they beat the environment and the file. */
static int apply_flags(const args_t *a, ukko_node_config_t *nc)
{
    if (a->log_format) {
        if (!strcmp(a->log_format, "json"))
            nc->log_format = UKKO_LOG_JSON;
        else if (!strcmp(a->log_format, "text"))
            nc->log_format = UKKO_LOG_TEXT;
        else {
            fprintf(stderr, "ukko: --log-format \"%s\": allowed: json or text\n", a->log_format);
            return -1;
        }
    }
    if (a->log_level) {
        ukko_log_level_t l;
        if (ukko_log_level_parse(a->log_level, &l) < 0 || l == UKKO_LOG_OFF) {
            fprintf(stderr, "ukko: --log-level \"%s\": allowed: debug, info, warn or error\n",
                    a->log_level);
            return -1;
        }
        nc->log_level = (int)l;
    }
    return 0;
}

static int cmd_check_config(const args_t *a)
{
    if (!a->config) {
        fprintf(stderr, "ukko: check-config needs a FILE (ukko check-config ukko.json)\n");
        return 2;
    }
    settings_t s;
    memset(&s, 0, sizeof(s));
    ukko_config_t *cfg = ukko_config_new();
    if (!cfg || register_all(cfg, &s) < 0) {
        fprintf(stderr, "ukko: out of memory\n");
        ukko_config_free(cfg);
        return 1;
    }
    int rc = 0;
    if (ukko_config_load(cfg, a->config, environ) > 0) {
        for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
            fprintf(stderr, "%s\n", ukko_config_error(cfg, i));
        fprintf(stderr, "ukko: %zu problem(s) in the config: fix them and run check-config again\n",
                ukko_config_error_count(cfg));
        rc = 2;
    } else {
        cJSON *json = ukko_config_to_json(cfg);
        char *text = json ? cJSON_Print(json) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        cJSON_Delete(json);
    }
    ukko_config_free(cfg);
    return rc;
}

static int cmd_config_keys(const args_t *a)
{
    settings_t s;
    memset(&s, 0, sizeof(s));
    ukko_config_t *cfg = ukko_config_new();
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    int rc = 1;
    if (cfg && register_all(cfg, &s) == 0 &&
        ukko_config_describe(cfg, !a->doc_format || !strcmp(a->doc_format, "markdown"), &out) == 0) {
        fputs(out.data ? out.data : "", stdout);
        rc = 0;
    }
    ukko_buf_destroy(&out);
    ukko_config_free(cfg);
    return rc;
}

/* `ukko members|leave|down`: the config (file and env) gives the default URL
 * (this host's management port) and token file; flags override them. */
static int cmd_ctl(const args_t *a)
{
    settings_t s;
    memset(&s, 0, sizeof(s));
    ukko_config_t *cfg = ukko_config_new();
    if (!cfg || register_all(cfg, &s) < 0 || ukko_config_load(cfg, a->config, environ) > 0) {
        for (size_t i = 0; cfg && i < ukko_config_error_count(cfg); i++)
            fprintf(stderr, "%s\n", ukko_config_error(cfg, i));
        ukko_config_free(cfg);
        return 2;
    }
    char url[300];
    snprintf(url, sizeof(url), "http://127.0.0.1:%lld", (long long)s.node.mgmt_port);
    int rc = ukko_ctl_run(a->command, a->operand, a->url ? a->url : url,
                          a->token_file ? a->token_file : s.node.mgmt_token_path);
    ukko_config_free(cfg);
    return rc;
}

static int cmd_run(const args_t *a)
{
    /* Log as asked from the first line, even before the config is read. */
    ukko_log_setup(UKKO_LOG_INFO,
                   a->log_format && !strcmp(a->log_format, "text") ? UKKO_LOG_TEXT : UKKO_LOG_JSON);
    settings_t s;
    memset(&s, 0, sizeof(s));
    ukko_config_t *cfg = ukko_config_new();
    if (!cfg || register_all(cfg, &s) < 0) {
        ukko_log(UKKO_LOG_ERROR, "node", "out of memory while reading the config");
        ukko_config_free(cfg);
        return 1;
    }
    if (ukko_config_load(cfg, a->config, environ) > 0) {
        for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
            ukko_log(UKKO_LOG_ERROR, "config", "%s", ukko_config_error(cfg, i));
        ukko_log(UKKO_LOG_ERROR, "config",
                 "not starting: %zu problem(s) in the config (ukko check-config FILE lists them)",
                 ukko_config_error_count(cfg));
        ukko_config_free(cfg);
        return 2;
    }
    if (apply_flags(a, &s.node) < 0) {
        ukko_config_free(cfg);
        return 2;
    }
    ukko_log_setup((ukko_log_level_t)s.node.log_level, (ukko_log_format_t)s.node.log_format);

    int code = 1;
#ifdef HAVE_UKKO_CLUSTER
    ukko_cluster_t *cluster = NULL;
#endif
    ukko_node_t *node = ukko_node_new(&s.node, NULL);
    ukko_actor_system_t *actors = NULL;
    if (!node) {
        ukko_log(UKKO_LOG_ERROR, "node", "out of memory while creating the node");
    } else if (ukko_actor_system_new(&s.actors, ukko_node_loop(node), &actors) < 0) {
        ukko_log(UKKO_LOG_ERROR, "actor", "cannot start the actor system (see above)");
    } else if (ukko_node_start(node) == 0) {
        ukko_node_add_metrics(node, ukko_actor_system_metrics, actors);
        bool run = true; /* false once a module failed to start: exit with code */
#ifdef HAVE_UKKO_CLUSTER
        /* Membership runs when the config asks for a cluster (seed nodes, a
         * keyring or cluster.insecure); without, the node serves but stays
         * not ready. A cluster without a keyring refuses to start (exit 2). */
        if (ukko_cluster_configured(&s.cluster)) {
            cluster = ukko_cluster_new(node, &s.cluster);
            /* Without seed nodes (the usual), the node bootstraps through
             * discovery: the Kubernetes API in a pod, or a static list. */
            if (cluster && s.cluster.seed_nodes.n == 0 &&
                ukko_cluster_use_discovery(cluster, &s.discovery, (int)s.node.mgmt_port) < 0) {
                ukko_cluster_free(cluster);
                cluster = NULL;
            }
            if (!cluster) {
                code = 2; /* the config asks for what cannot be (said above) */
                run = false;
            } else if (ukko_cluster_start(cluster) == 0) {
                ukko_node_set_membership_check(node, ukko_cluster_ready_check, cluster);
                ukko_node_add_stop_hook(node, ukko_cluster_stop_hook, cluster);
            } else {
                ukko_cluster_free(cluster);
                cluster = NULL;
                run = false;
            }
        } else {
            ukko_log(UKKO_LOG_WARN, "cluster",
                     "no cluster configured (cluster.seed-nodes, cluster.keyring-path and "
                     "cluster.insecure are unset): this node joins no cluster and /ready stays "
                     "500");
        }
#endif
        if (run)
            code = ukko_node_run(node);
    }
    /* After every stop hook (the cluster's leave and hand-off use actors):
     * the actors drain what is queued, then stop; their threads are joined. */
    if (actors)
        ukko_actor_system_stop(actors, UKKO_SHUTDOWN_DRAIN, 5000);
#ifdef HAVE_UKKO_CLUSTER
    ukko_cluster_free(cluster);
#endif
    ukko_actor_system_free(actors);
    ukko_node_free(node);
    ukko_config_free(cfg);
    return code;
}

#ifdef HAVE_UKKO_DISCOVERY
/* `ukko discover`: what this pod's discovery sees, for operators debugging
 * RBAC and labels, and for tests. stdout gets only the JSON lines. */
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

static int cmd_discover(const args_t *a)
{
    /* --once prints its outcome itself: only errors are logged unless asked.
     * The refresh reports only changes, so its failed lookups (warnings)
     * are what shows a failure there. */
    ukko_log_level_t quiet = a->once ? UKKO_LOG_ERROR : UKKO_LOG_WARN;
    ukko_log_setup(quiet, UKKO_LOG_TEXT);
    settings_t s;
    memset(&s, 0, sizeof(s));
    ukko_config_t *cfg = ukko_config_new();
    if (!cfg || register_all(cfg, &s) < 0) {
        fprintf(stderr, "ukko: out of memory\n");
        ukko_config_free(cfg);
        return 1;
    }
    if (ukko_config_load(cfg, a->config, environ) > 0) {
        for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
            fprintf(stderr, "%s\n", ukko_config_error(cfg, i));
        ukko_config_free(cfg);
        return 2;
    }
    if (a->log_level || a->log_format) {
        if (apply_flags(a, &s.node) < 0) {
            ukko_config_free(cfg);
            return 2;
        }
        ukko_log_setup(a->log_level ? (ukko_log_level_t)s.node.log_level : quiet,
                       (ukko_log_format_t)s.node.log_format);
    }
    signal(SIGPIPE, SIG_IGN);
    discover_run_t r = {.loop = ev_default_loop(0), .once = a->once, .code = 1};
    int port = s.node.mgmt_port > 0 ? (int)s.node.mgmt_port : 8558;
    ukko_discovery_t *d = ukko_discovery_new(&s.discovery, r.loop, port);
    if (!d) {
        fprintf(stderr, "ukko discover: cannot set up discovery (see the message above)\n");
        ukko_config_free(cfg);
        return 1;
    }
    ev_signal sig_int, sig_term;
    ev_signal_init(&sig_int, on_discover_signal, SIGINT);
    ev_signal_init(&sig_term, on_discover_signal, SIGTERM);
    ev_signal_start(r.loop, &sig_int);
    ev_signal_start(r.loop, &sig_term);
    int rc = a->once ? ukko_discovery_lookup(d, on_discovered, &r)
                     : ukko_discovery_start(d, 0, on_discovered, &r);
    if (rc == 0)
        ev_run(r.loop, 0);
    if (!a->once)
        r.code = rc == 0 ? 0 : 1; /* a refresh ends only by a signal */
    ev_signal_stop(r.loop, &sig_int);
    ev_signal_stop(r.loop, &sig_term);
    ukko_discovery_free(d);
    ukko_config_free(cfg);
    return r.code;
}
#endif

int main(int argc, char **argv)
{
    args_t a;
#ifdef HAVE_UKKO_STREAMS
    if (argc > 1 && !strcmp(argv[1], "dev-kafka"))
        return ukko_streams_dev_kafka_main(argc - 1, argv + 1);
#endif
    if (parse_args(argc, argv, &a) < 0)
        return 2;
    if (!strcmp(a.command, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a.command, "version")) {
        printf("ukko %s\n", UKKO_VERSION);
        return 0;
    }
    if (!strcmp(a.command, "check-config"))
        return cmd_check_config(&a);
    if (!strcmp(a.command, "config-keys"))
        return cmd_config_keys(&a);
    if (!strcmp(a.command, "run"))
        return cmd_run(&a);
    if (!strcmp(a.command, "members") || !strcmp(a.command, "leave") || !strcmp(a.command, "down"))
        return cmd_ctl(&a);
#ifdef HAVE_UKKO_DISCOVERY
    if (!strcmp(a.command, "discover"))
        return cmd_discover(&a);
#endif
    fprintf(stderr, "ukko: unknown command \"%s\" (commands: run, check-config, config-keys, discover, members, leave, down; see ukko --help)\n",
            a.command);
    return 2;
}
