/* host.c: runs a node from a flat list of modules: one config of every
 * module's settings, the node and its actor system, the application's init,
 * the modules' start in list order with their routes and metrics, and
 * their release in reverse order; plus the registry of app hooks and the
 * helpers of the program's commands. Main thread, which runs the node's
 * loop. Invariant: a module's routes, metrics and free see only the state
 * its own start left. */
#include "ukko.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct hook {
    const char *kind;
    const void *desc;
} hook_t;

struct ukko_host {
    const ukko_module_t *const *modules;
    size_t n;
    void **settings; /* per module, settings_size bytes each (NULL when 0) */
    void **states;   /* per module, what its start left */
    ukko_node_config_t nc;
    ukko_actor_config_t ac;
    ukko_config_t *cfg;
    ukko_node_t *node;
    ukko_actor_system_t *actors;
    const ukko_app_t *app;
    hook_t *hooks;
    size_t nhooks, hookcap;
    bool ran;
    int code; /* what the run returned: the process's exit code */
};

int ukko_host_new(const ukko_module_t *const *modules, size_t n, ukko_host_t **out)
{
    *out = NULL;
    ukko_host_t *h = calloc(1, sizeof(*h));
    int rc = UKKO_ENOMEM;
    if (!h)
        return rc;
    h->modules = modules;
    h->n = n;
    h->settings = calloc(n ? n : 1, sizeof(*h->settings));
    h->states = calloc(n ? n : 1, sizeof(*h->states));
    h->cfg = ukko_config_new();
    if (!h->settings || !h->states || !h->cfg)
        goto fail;
    /* The core's keys first, then each module's: check-config prints them
     * in this order. */
    rc = ukko_node_config_register(h->cfg, &h->nc);
    if (rc == 0)
        rc = ukko_actor_config_register(h->cfg, &h->ac);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const ukko_module_t *m = modules[i];
        if (m->settings_size) {
            h->settings[i] = calloc(1, m->settings_size);
            if (!h->settings[i]) {
                rc = UKKO_ENOMEM;
                break;
            }
        }
        if (m->register_config)
            rc = m->register_config(h->cfg, h->settings[i]);
    }
    if (rc < 0)
        goto fail;
    *out = h;
    return 0;
fail:
    ukko_host_free(h);
    return rc < 0 ? rc : UKKO_ENOMEM;
}

/* The modules' teardown after a run ends in client libraries' own blocking
 * closes (librdkafka's last commit and consumer close); one of them waiting
 * on a broker that vanished at the same moment was seen to hang for
 * minutes. Everything the stop had to do is done by then (hand-offs,
 * commits, leave), so past TEARDOWN_MAX_S the process exits with the run's
 * code instead of keeping a stopped pod alive until its SIGKILL. */
#define TEARDOWN_MAX_S 15

typedef struct watchdog {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int code;
} watchdog_t;

static void *watchdog_main(void *arg)
{
    watchdog_t *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += TEARDOWN_MAX_S;
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    while (!w->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
    bool done = w->done;
    pthread_mutex_unlock(&w->lock);
    if (!done) {
        ukko_logf(UKKO_LOG_ERROR, "node", UKKO_FIELDS(UKKO_FI("exit_code", w->code)),
                  "the teardown after the stop has taken more than %d s (a client library "
                  "waiting on a peer that is gone, such as librdkafka's consumer close with "
                  "its broker down): exiting now with code %d; the stop itself had finished",
                  TEARDOWN_MAX_S, w->code);
        _exit(w->code);
    }
    return NULL;
}

static void modules_free(ukko_host_t *h)
{
    for (size_t i = h->n; i-- > 0;) {
        if (h->states && h->states[i] && h->modules[i]->free)
            h->modules[i]->free(h->states[i]);
        if (h->states)
            h->states[i] = NULL;
    }
}

void ukko_host_free(ukko_host_t *h)
{
    if (!h)
        return;
    watchdog_t w = {.done = false, .code = h->code};
    pthread_t t;
    bool armed = false;
    if (h->ran && pthread_mutex_init(&w.lock, NULL) == 0) {
        pthread_condattr_t ca;
        if (pthread_condattr_init(&ca) == 0) {
            if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                pthread_cond_init(&w.cond, &ca) == 0) {
                armed = pthread_create(&t, NULL, watchdog_main, &w) == 0;
                if (!armed)
                    pthread_cond_destroy(&w.cond);
            }
            pthread_condattr_destroy(&ca);
        }
        if (!armed)
            pthread_mutex_destroy(&w.lock);
    }
    modules_free(h);
    if (armed) {
        pthread_mutex_lock(&w.lock);
        w.done = true;
        pthread_cond_signal(&w.cond);
        pthread_mutex_unlock(&w.lock);
        pthread_join(t, NULL);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
    }
    ukko_actor_system_free(h->actors);
    ukko_node_free(h->node);
    /* The config releases the strings it stored into the settings, so it
     * goes first. */
    ukko_config_free(h->cfg);
    for (size_t i = 0; h->settings && i < h->n; i++)
        free(h->settings[i]);
    free(h->settings);
    free(h->states);
    free(h->hooks);
    free(h);
}

ukko_config_t *ukko_host_config(ukko_host_t *h)
{
    return h->cfg;
}

static size_t module_index(const ukko_host_t *h, const char *name)
{
    for (size_t i = 0; name && i < h->n; i++)
        if (!strcmp(h->modules[i]->name, name))
            return i;
    return SIZE_MAX;
}

void *ukko_host_settings(ukko_host_t *h, const char *module)
{
    if (module && !strcmp(module, "node"))
        return &h->nc;
    if (module && !strcmp(module, "actors"))
        return &h->ac;
    size_t i = module_index(h, module);
    return i == SIZE_MAX ? NULL : h->settings[i];
}

void *ukko_host_module(ukko_host_t *h, const char *module)
{
    size_t i = module_index(h, module);
    return i == SIZE_MAX ? NULL : h->states[i];
}

ukko_node_t *ukko_host_node(ukko_host_t *h)
{
    return h->node;
}

ukko_actor_system_t *ukko_host_actors(ukko_host_t *h)
{
    return h->actors;
}

const ukko_app_t *ukko_host_app(ukko_host_t *h)
{
    return h->app;
}

int ukko_host_add_hook(ukko_host_t *h, const char *kind, const void *desc)
{
    if (!kind || !desc)
        return UKKO_EINVAL;
    if (h->nhooks == h->hookcap) {
        size_t ncap = h->hookcap ? h->hookcap * 2 : 8;
        hook_t *nh = realloc(h->hooks, ncap * sizeof(*nh));
        if (!nh)
            return UKKO_ENOMEM;
        h->hooks = nh;
        h->hookcap = ncap;
    }
    h->hooks[h->nhooks].kind = kind;
    h->hooks[h->nhooks].desc = desc;
    h->nhooks++;
    return 0;
}

const void *ukko_host_hook(ukko_host_t *h, const char *kind, size_t i)
{
    for (size_t k = 0; kind && k < h->nhooks; k++)
        if (!strcmp(h->hooks[k].kind, kind) && i-- == 0)
            return h->hooks[k].desc;
    return NULL;
}

/* --------------------------------------------------------------- run */

/* The last phase of the stop: actors handle what is queued (within the
 * phase's time, 5 s at most), then stop and their threads are joined. */
static void stop_actors(ukko_stop_task_t *task, void *ud)
{
    ukko_host_t *h = ud;
    int64_t t = ukko_stop_task_remaining_ms(task);
    (void)ukko_actor_system_stop(h->actors, UKKO_SHUTDOWN_DRAIN, t < 5000 ? t : 5000);
    ukko_stop_task_done(task);
}

static int exit_code_of(int rc)
{
    return rc == UKKO_EINVAL ? 2 : 1;
}

int ukko_host_run(ukko_host_t *h, const ukko_app_t *app)
{
    if (h->ran) {
        ukko_log(UKKO_LOG_ERROR, "node", "ukko_host_run: a host runs once");
        return 1;
    }
    h->ran = true;
    h->app = app;
    int code = 1;
    h->node = ukko_node_new(&h->nc, NULL);
    if (!h->node) {
        ukko_log(UKKO_LOG_ERROR, "node", "out of memory while creating the node");
        goto out;
    }
    if (ukko_actor_system_new(&h->ac, ukko_node_loop(h->node), &h->actors) < 0) {
        ukko_log(UKKO_LOG_ERROR, "actor", "cannot start the actor system (see above)");
        goto out;
    }
    if (ukko_node_start(h->node) < 0)
        goto out;
    ukko_node_add_metrics(h->node, ukko_actor_system_metrics, h->actors);
    (void)ukko_node_add_stop_task(h->node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "actor-system",
                                  stop_actors, h);
    if (app && app->init) {
        int rc = app->init(h, app->ud);
        if (rc < 0) {
            ukko_logf(UKKO_LOG_ERROR, "node", UKKO_FIELDS(UKKO_FS("app", app->name)),
                      "application %s did not start (%s): not running", app->name,
                      ukko_strerror(rc));
            code = exit_code_of(rc);
            goto out;
        }
    }
    for (size_t i = 0; i < h->n; i++) {
        const ukko_module_t *m = h->modules[i];
        if (!m->start)
            continue;
        void *state = NULL;
        int rc = m->start(h, h->settings[i], &state);
        if (rc < 0) {
            /* The module said why; a module that fails leaves nothing. */
            code = exit_code_of(rc);
            goto out;
        }
        h->states[i] = state;
        if (!state)
            continue;
        if (m->routes && m->routes(ukko_node_http(h->node), state) < 0) {
            ukko_log(UKKO_LOG_ERROR, m->name, "cannot add the management routes of %s", m->name);
            goto out;
        }
        if (m->metrics)
            ukko_node_add_metrics(h->node, m->metrics, state);
    }
    code = ukko_node_run(h->node);
out:
    h->code = code;
    /* After the stop's phases (or a failed start): what is still queued is
     * drained; a second call returns at once. */
    if (h->actors)
        ukko_actor_system_stop(h->actors, UKKO_SHUTDOWN_DRAIN, 5000);
    return code;
}

/* ------------------------------------------------------------ commands */

int ukko_cmd_load_config(const ukko_cmd_t *cmd)
{
    ukko_config_t *cfg = ukko_host_config(cmd->host);
    if (ukko_config_load(cfg, cmd->config_path, environ) == 0)
        return 0;
    for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
        fprintf(stderr, "%s\n", ukko_config_error(cfg, i));
    return 2;
}

int ukko_cmd_log_flags(const ukko_cmd_t *cmd, ukko_node_config_t *nc)
{
    if (cmd->log_format) {
        if (!strcmp(cmd->log_format, "json"))
            nc->log_format = UKKO_LOG_JSON;
        else if (!strcmp(cmd->log_format, "text"))
            nc->log_format = UKKO_LOG_TEXT;
        else {
            fprintf(stderr, "ukko: --log-format \"%s\": allowed: json or text\n", cmd->log_format);
            return 2;
        }
    }
    if (cmd->log_level) {
        ukko_log_level_t l;
        if (ukko_log_level_parse(cmd->log_level, &l) < 0 || l == UKKO_LOG_OFF) {
            fprintf(stderr, "ukko: --log-level \"%s\": allowed: debug, info, warn or error\n",
                    cmd->log_level);
            return 2;
        }
        nc->log_level = (int)l;
    }
    return 0;
}

int ukko_cmd_unknown_arg(const char *arg)
{
    fprintf(stderr, "ukko: unknown argument \"%s\" (see ukko --help)\n", arg);
    return 2;
}

const char *ukko_cmd_flag_value(const ukko_cmd_t *cmd, int *i)
{
    if (*i + 1 >= cmd->argc) {
        fprintf(stderr, "ukko: %s needs a value (see ukko --help)\n", cmd->argv[*i]);
        return NULL;
    }
    return cmd->argv[++*i];
}
