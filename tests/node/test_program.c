/* Tests node/program.c, the documented entry point of a program built on
 * ukko: ukko_main with an application of its own, or a built-in one picked
 * with --app; the application's init runs with the host as its context and
 * its hooks reach the modules' registry; usage errors exit 2. Each test
 * runs ukko_main in its own Criterion worker, on the default loop, with the
 * management server on 127.0.0.1 and a port the kernel picks. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static int inits;
static const void *hook_seen;
static const char *const entity = "orders";

/* Registers a hook and stops the node at once: ukko_main then returns. */
static int init(ukko_host_t *host, void *ud)
{
    inits++;
    cr_assert_str_eq(ud, "ud");
    cr_assert(ukko_host_node(host) && ukko_host_actors(host));
    cr_assert_eq(ukko_host_app(host)->init, init);
    cr_assert_eq(ukko_host_add_hook(host, "test.entity-type", entity), 0);
    hook_seen = ukko_host_hook(host, "test.entity-type", 0);
    cr_assert(ukko_host_settings(host, "cluster"), "the program's modules have settings");
    ukko_node_stop(ukko_host_node(host), "the test is over");
    return 0;
}

static const ukko_app_t mine = {.name = "mine", .about = "a test application", .init = init,
                                .ud = "ud"};
static const ukko_app_t demo = {.name = "demo", .init = init, .ud = "ud"};

static void setup(void)
{
    inits = 0;
    hook_seen = NULL;
    setenv("UKKO_MANAGEMENT_HOSTNAME", "127.0.0.1", 1);
    setenv("UKKO_MANAGEMENT_PORT", "0", 1);
    setenv("UKKO_LOG_LEVEL", "error", 1);
}

TestSuite(program, .init = setup, .timeout = 30);

static int run(const char *a1, const char *a2, const char *a3, const ukko_app_t *app)
{
    char *argv[] = {"ukko", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    return ukko_main(argc, argv, app);
}

Test(program, a_program_runs_its_own_application)
{
    cr_assert_eq(run("run", NULL, NULL, &mine), 0, "an orderly stop exits 0");
    cr_assert_eq(inits, 1, "the application's init ran once");
    cr_assert_eq(hook_seen, entity, "its hook is in the registry");
}

Test(program, a_built_in_application_is_picked_by_name)
{
    cr_assert_eq(ukko_app_register(&demo), 0);
    cr_assert_eq(ukko_app_register(&demo), UKKO_EINVAL, "names are unique");
    cr_assert_eq(run("run", "--app", "demo", NULL), 0);
    cr_assert_eq(inits, 1);
}

Test(program, without_app_no_application_runs)
{
    cr_assert_eq(ukko_app_register(&demo), 0);
    /* Nothing stops this node by itself: a bad flag ends it first. */
    cr_assert_eq(run("run", "--app", "nosuch", NULL), 2, "an unknown application is bad usage");
    cr_assert_eq(inits, 0);
}

Test(program, another_application_than_the_programs_own_is_bad_usage)
{
    cr_assert_eq(run("run", "--app", "demo", &mine), 2);
    cr_assert_eq(inits, 0);
}

Test(program, unknown_commands_and_arguments_exit_2)
{
    cr_assert_eq(run("nosuch", NULL, NULL, NULL), 2);
    cr_assert_eq(run("run", "--bogus", NULL, NULL), 2);
    cr_assert_eq(run("run", "--config", NULL, NULL), 2, "a flag without its value");
    cr_assert_eq(run("--version", NULL, NULL, NULL), 0);
}
