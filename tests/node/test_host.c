/* Tests node/host.c, the program's module runner: every module's settings
 * sized by the module and loaded from one config, the application's init
 * before the modules start, modules started in list order and released in
 * reverse, the registry of app hooks, a module's stop tasks in the node's
 * phases, and the exit codes of a module or an application that cannot
 * start (2 for what the config asks, 1 otherwise). Each test runs its node
 * on the default loop of its own Criterion worker process. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct alpha_settings {
    int64_t size;
    char *label;
} alpha_settings_t;

static const ukko_cfg_key_t alpha_keys[] = {
    {"alpha.size", UKKO_CFG_INT, offsetof(alpha_settings_t, size), "3", 0, 100, NULL, NULL,
     "A test key."},
    {"alpha.label", UKKO_CFG_STRING, offsetof(alpha_settings_t, label), "\"a\"", 0, 0, NULL, NULL,
     "Another."},
};

static char trail[32][64];
static size_t ntrail;
static int beta_rc;      /* what beta's start returns */
static int app_rc;       /* what the application's init returns */
static size_t hooks_seen; /* what beta found in the registry */
static int64_t beta_saw_size;

static void note(const char *what)
{
    cr_assert(ntrail < 32);
    snprintf(trail[ntrail++], sizeof(trail[0]), "%s", what);
}

static int alpha_register(ukko_config_t *cfg, void *settings)
{
    return ukko_config_add(cfg, alpha_keys, 2, settings);
}

static void alpha_stop(ukko_stop_task_t *task, void *ud)
{
    (void)ud;
    note("alpha:stop-task");
    ukko_stop_task_done(task);
}

static int alpha_start(ukko_host_t *host, void *settings, void **state)
{
    (void)settings;
    note("alpha:start");
    cr_assert(ukko_host_node(host) && ukko_host_actors(host), "the node and actors exist");
    ukko_node_add_stop_task(ukko_host_node(host), UKKO_PHASE_CLUSTER_LEAVE, "alpha", alpha_stop,
                            NULL);
    *state = (void *)"alpha-state";
    return 0;
}

static void alpha_free(void *state)
{
    cr_assert_str_eq(state, "alpha-state", "free gets what start left");
    note("alpha:free");
}

static int beta_start(ukko_host_t *host, void *settings, void **state)
{
    (void)settings;
    note("beta:start");
    cr_assert_str_eq(ukko_host_module(host, "alpha"), "alpha-state",
                     "a module finds those before it");
    alpha_settings_t *as = ukko_host_settings(host, "alpha");
    beta_saw_size = as->size;
    for (hooks_seen = 0; ukko_host_hook(host, "test.entity-type", hooks_seen); hooks_seen++)
        ;
    if (beta_rc < 0)
        return beta_rc;
    *state = (void *)"beta-state";
    /* Nothing more to do: stop the node at once, as SIGTERM would. */
    ukko_node_stop(ukko_host_node(host), "test over");
    return 0;
}

static bool beta_hang; /* beta's free blocks, as a library's close can */

static void beta_free(void *state)
{
    cr_assert_str_eq(state, "beta-state");
    note("beta:free");
    while (beta_hang)
        pause(); /* until the teardown's watchdog ends the process */
}

static int gamma_start(ukko_host_t *host, void *settings, void **state)
{
    (void)host;
    (void)settings;
    (void)state;
    note("gamma:start");
    return 0;
}

static const ukko_module_t alpha = {
    .name = "alpha",
    .settings_size = sizeof(alpha_settings_t),
    .register_config = alpha_register,
    .start = alpha_start,
    .free = alpha_free,
};
static const ukko_module_t beta = {.name = "beta", .start = beta_start, .free = beta_free};
static const ukko_module_t gamma_module = {.name = "gamma", .start = gamma_start};
static const ukko_module_t *const modules[] = {&alpha, &beta, &gamma_module};

static const char *const type_a = "orders", *const type_b = "payments";

static int app_init(ukko_host_t *host, void *ud)
{
    cr_assert_str_eq(ud, "app-ud");
    note("app:init");
    cr_assert_null(ukko_host_module(host, "alpha"), "the application comes before the modules");
    cr_assert_eq(ukko_host_add_hook(host, "test.entity-type", type_a), 0);
    cr_assert_eq(ukko_host_add_hook(host, "test.entity-type", type_b), 0);
    cr_assert_eq(ukko_host_add_hook(host, "test.other", type_a), 0);
    return app_rc;
}

static const ukko_app_t app = {.name = "test-app", .init = app_init, .ud = "app-ud"};

static char *const env[] = {"UKKO_MANAGEMENT_HOSTNAME=127.0.0.1", "UKKO_MANAGEMENT_PORT=0",
                            "UKKO_ALPHA_SIZE=7", "UKKO_LOG_LEVEL=error", NULL};

static ukko_host_t *host;

static void setup(void)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_TEXT);
    ntrail = 0;
    beta_rc = 0;
    app_rc = 0;
    cr_assert_eq(ukko_host_new(modules, 3, &host), 0);
    cr_assert_eq(ukko_config_load(ukko_host_config(host), NULL, env), 0,
                 "the modules' keys load with the core's: %s",
                 ukko_config_error_count(ukko_host_config(host))
                     ? ukko_config_error(ukko_host_config(host), 0)
                     : "");
}

static void teardown(void)
{
    ukko_host_free(host);
}

TestSuite(host, .init = setup, .fini = teardown, .timeout = 30);

Test(host, settings_are_sized_by_the_module_and_found_by_name)
{
    alpha_settings_t *as = ukko_host_settings(host, "alpha");
    cr_assert(as);
    cr_assert_eq(as->size, 7, "from the environment");
    cr_assert_str_eq(as->label, "a", "the default");
    cr_assert_null(ukko_host_settings(host, "beta"), "a module with no settings has none");
    cr_assert_null(ukko_host_settings(host, "nosuch"));
    ukko_node_config_t *nc = ukko_host_settings(host, "node");
    cr_assert(nc && nc->mgmt_port == 0, "the core's own settings are there too");
    cr_assert(ukko_host_settings(host, "actors"));
    cr_assert_null(ukko_host_node(host), "no node before run");
}

Test(host, the_app_then_the_modules_start_in_order_and_are_freed_in_reverse)
{
    int code = ukko_host_run(host, &app);
    cr_assert_eq(code, 0, "an orderly stop exits 0");
    cr_assert_eq(hooks_seen, 2, "the module found the application's two entity types");
    cr_assert_eq(beta_saw_size, 7);
    ukko_host_free(host);
    host = NULL;
    const char *want[] = {"app:init", "alpha:start", "beta:start", "gamma:start",
                          "alpha:stop-task", "beta:free", "alpha:free"};
    cr_assert_eq(ntrail, 7, "ran %zu steps", ntrail);
    for (size_t i = 0; i < 7; i++)
        cr_assert_str_eq(trail[i], want[i], "step %zu: expected %s, was %s", i, want[i], trail[i]);
}

Test(host, the_hooks_of_a_kind_come_in_the_order_added)
{
    cr_assert_eq(ukko_host_add_hook(host, "k", "one"), 0);
    cr_assert_eq(ukko_host_add_hook(host, "other", "x"), 0);
    cr_assert_eq(ukko_host_add_hook(host, "k", "two"), 0);
    cr_assert_str_eq(ukko_host_hook(host, "k", 0), "one");
    cr_assert_str_eq(ukko_host_hook(host, "k", 1), "two");
    cr_assert_null(ukko_host_hook(host, "k", 2));
    cr_assert_null(ukko_host_hook(host, "none", 0));
    cr_assert_eq(ukko_host_add_hook(host, NULL, "x"), UKKO_EINVAL);
}

Test(host, a_module_refusing_its_settings_exits_2_and_later_ones_never_start)
{
    beta_rc = UKKO_EINVAL;
    cr_assert_eq(ukko_host_run(host, NULL), 2);
    ukko_host_free(host);
    host = NULL;
    const char *want[] = {"alpha:start", "beta:start", "alpha:free"};
    cr_assert_eq(ntrail, 3, "ran %zu steps", ntrail);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(trail[i], want[i]);
}

Test(host, a_module_failing_otherwise_exits_1)
{
    beta_rc = UKKO_ENOMEM;
    cr_assert_eq(ukko_host_run(host, NULL), 1);
}

Test(host, an_application_that_cannot_start_stops_the_run)
{
    app_rc = UKKO_EINVAL;
    cr_assert_eq(ukko_host_run(host, &app), 2);
    cr_assert_eq(ntrail, 1, "no module started");
    cr_assert_eq(ukko_host_run(host, &app), 1, "a host runs once");
}

/* A module whose teardown hangs (librdkafka's consumer close waiting on a
 * broker that is gone) does not keep the process alive: after the stop, the
 * host's watchdog exits with the run's code (0 here; without the watchdog
 * this test times out). */
Test(host, a_teardown_that_hangs_ends_with_the_runs_exit_code, .exit_code = 0, .timeout = 60)
{
    beta_hang = true;
    cr_assert_eq(ukko_host_run(host, &app), 0);
    ukko_host_free(host);
    cr_assert_fail("the teardown returned although beta's free never does");
}
