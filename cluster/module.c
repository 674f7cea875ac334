/* module.c: cluster/ as a module of the program: its settings, its start
 * (membership, bootstrap through discovery unless seed nodes are given),
 * readiness check, stop tasks, routes and metrics, and the operator
 * commands `ukko members|leave|down`. Main thread, which runs the loop. */
#include "runtime.h"

#include <stdio.h>
#include <string.h>

static int register_config(ukko_config_t *cfg, void *settings)
{
    return ukko_cluster_config_register(cfg, settings);
}

static int start(ukko_host_t *host, void *settings, void **state)
{
    const ukko_cluster_config_t *cc = settings;
    /* Membership runs when the config asks for a cluster (seed nodes, a
     * keyring or cluster.insecure); without, the node serves but stays not
     * ready. A cluster without a keyring refuses to start (exit 2). */
    if (!ukko_cluster_configured(cc)) {
        ukko_log(UKKO_LOG_WARN, "cluster",
                 "no cluster configured (cluster.seed-nodes, cluster.keyring-path and "
                 "cluster.insecure are unset): this node joins no cluster and /ready stays 500");
        return 0;
    }
    ukko_node_t *node = ukko_host_node(host);
    ukko_cluster_t *c = ukko_cluster_new(node, cc);
    if (!c)
        return UKKO_EINVAL; /* the config asks for what cannot be (said above) */
    /* Without seed nodes (the usual), the node bootstraps through
     * discovery: the Kubernetes API in a pod, or a static list. */
    const ukko_discovery_config_t *dc = ukko_host_settings(host, "discovery");
    const ukko_node_config_t *nc = ukko_host_settings(host, "node");
    if (cc->seed_nodes.n == 0 &&
        (!dc || ukko_cluster_use_discovery(c, dc, (int)nc->mgmt_port) < 0)) {
        if (!dc)
            ukko_log(UKKO_LOG_ERROR, "cluster",
                     "cluster.seed-nodes is empty and this program has no discovery module: "
                     "set cluster.seed-nodes");
        ukko_cluster_free(c);
        return UKKO_EINVAL;
    }
    int rc = ukko_cluster_start(c);
    if (rc == 0)
        rc = ukko_cluster_add_stop_tasks(c);
    if (rc < 0) {
        ukko_cluster_free(c);
        /* A socket that cannot be had is a failure of the run (exit 1),
         * whatever errno said. */
        return rc == UKKO_EINVAL ? UKKO_EPROTO : rc;
    }
    ukko_node_set_membership_check(node, ukko_cluster_ready_check, c);
    *state = c;
    return 0;
}

static int routes(ukko_http_server_t *srv, void *state)
{
    return cluster__routes_register(state, srv);
}

static void free_state(void *state)
{
    ukko_cluster_free(state);
}

ukko_cluster_t *ukko_cluster_of(ukko_host_t *host)
{
    return ukko_host_module(host, "cluster");
}

/* `ukko members|leave|down`: the config (file and env) gives the default URL
 * (this host's management port) and token file; flags override them. */
static int cmd_ctl(const ukko_cmd_t *cmd)
{
    const char *url = NULL, *token_file = NULL, *operand = NULL;
    bool takes_operand = strcmp(cmd->name, "members") != 0;
    for (int i = 0; i < cmd->argc; i++) {
        const char *arg = cmd->argv[i];
        if (!strcmp(arg, "--url")) {
            if (!(url = ukko_cmd_flag_value(cmd, &i)))
                return 2;
        } else if (!strcmp(arg, "--token-file")) {
            if (!(token_file = ukko_cmd_flag_value(cmd, &i)))
                return 2;
        } else if (takes_operand && arg[0] != '-' && !operand) {
            operand = arg;
        } else {
            return ukko_cmd_unknown_arg(arg);
        }
    }
    int rc = ukko_cmd_load_config(cmd);
    if (rc != 0)
        return rc;
    const ukko_node_config_t *nc = ukko_host_settings(cmd->host, "node");
    char def[300];
    snprintf(def, sizeof(def), "http://127.0.0.1:%lld", (long long)nc->mgmt_port);
    return cluster__ctl_run(cmd->name, operand, url ? url : def,
                            token_file ? token_file : nc->mgmt_token_path);
}

static const ukko_subcommand_t commands[] = {
    {"members",
     "  ukko members [--url URL]               the cluster's members, as a node sees them\n",
     cmd_ctl, false},
    {"leave",
     "  ukko leave ADDRESS [--url URL] [--token-file F]\n"
     "                                         ask a member to leave gracefully\n",
     cmd_ctl, false},
    {"down",
     "  ukko down ADDRESS [--url URL] [--token-file F]\n"
     "                                         mark an unreachable member Down\n",
     cmd_ctl, false},
    {NULL, NULL, NULL, false},
};

const ukko_module_t ukko_cluster_module = {
    .name = "cluster",
    .settings_size = sizeof(ukko_cluster_config_t),
    .register_config = register_config,
    .start = start,
    .routes = routes,
    .metrics = cluster__metrics,
    .free = free_state,
    .commands = commands,
};
