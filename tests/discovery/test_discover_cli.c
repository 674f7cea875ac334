/* test_discover_cli.c: `ukko discover --once` as an operator runs it, against
 * the emulator serving every recorded response of ../shared/k8s-fixtures
 * (README.md there lists the cases), plus its failures (exit 1 and the cause
 * on stderr), a bad config (exit 2) and the static method. */
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ut_emulator_t em;

static void stop_emulator(void)
{
    ut_emulator_stop(&em);
}

TestSuite(discover_cli, .fini = stop_emulator);

typedef struct run {
    int code;
    char *out;
    char *err;
} run_t;

/* `ukko discover --once` with the pod's files from the emulator's state dir,
 * a config file holding config_json (NULL: none) and extra "K=V" env. */
static run_t discover(const char *config_json, const char *const *extra)
{
    char url[128], ca[900], tok[900], ns[900], cfgpath[900];
    snprintf(url, sizeof(url), "UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.1:%d",
             em.port);
    snprintf(ca, sizeof(ca), "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s/ca.crt", em.dir);
    snprintf(tok, sizeof(tok), "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s/token", em.dir);
    snprintf(ns, sizeof(ns), "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH=%s/namespace",
             em.dir);
    const char *env[16] = {url, ca, tok, ns};
    size_t n = 4;
    for (const char *const *x = extra; x && *x && n < 15; x++)
        env[n++] = *x;
    env[n] = NULL;
    const char *argv[6] = {UKKO_BIN, "discover", "--once", NULL, NULL, NULL};
    if (config_json) {
        snprintf(cfgpath, sizeof(cfgpath), "%s/ukko.json", em.dir ? em.dir : "/tmp");
        cr_assert_eq(ut_write_file(cfgpath, config_json), 0);
        argv[3] = "--config";
        argv[4] = cfgpath;
    }
    run_t r = {0};
    cr_assert_eq(ut_exec(argv, env, 60000, &r.out, &r.err, &r.code), 0, "could not run ukko");
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static const char *shared_or_skip(void)
{
    const char *dir = ut_shared_fixtures();
    if (!dir)
        cr_skip("the recorded fixtures are not beside the checkout (%s): skipped",
                UKKO_SOURCE_DIR "/../shared/k8s-fixtures");
    return dir;
}

static void serve_shared(const char *file, const char *ns)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", shared_or_skip(), file);
    const char *extra[] = {"--namespace", ns, NULL};
    cr_assert_eq(ut_emulator_start(&em, path, extra), 0, "the emulator did not start");
}

static void expect_line(const run_t *r, const char *want)
{
    cr_expect_eq(r->code, 0, "exit 0 expected, got %d; stderr: %s", r->code, r->err);
    char line[8192];
    snprintf(line, sizeof(line), "%s\n", want);
    cr_expect_str_eq(r->out, line, "stdout must be exactly one JSON line");
}

#define PEKKO "pekko-cluster-tooling-example-v0-1-0-7f854bcc78-"
#define PEKKO_SELECTOR "UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR=appName=%s"
#define PEKKO_SERVICE "UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=pekko-cluster-tooling-example"

Test(discover_cli, pods_json_management_port_and_default_port, .timeout = 180)
{
    serve_shared("pods.json", "default");
    const char *sel[] = {PEKKO_SELECTOR, PEKKO_SERVICE, NULL};
    run_t r = discover(NULL, sel);
    expect_line(&r, "{\"contact_points\":[{\"pod\":\"" PEKKO "dvm9q\",\"host\":\"172.17.0.4\","
                    "\"port\":10001},{\"pod\":\"" PEKKO "m8dqb\",\"host\":\"172.17.0.6\","
                    "\"port\":10001}]}");
    cr_expect(strstr(r.err, "1 terminating") && strstr(r.err, "1 not Running"),
              "stderr explains who was left out: %s", r.err);
    run_free(&r);

    /* No port name: the same hosts on the default management port. */
    r = discover("{\"discovery\": {\"kubernetes-api\": {\"pod-port-name\": null}}}", sel);
    expect_line(&r, "{\"contact_points\":[{\"pod\":\"" PEKKO "dvm9q\",\"host\":\"172.17.0.4\","
                    "\"port\":8558},{\"pod\":\"" PEKKO "m8dqb\",\"host\":\"172.17.0.6\","
                    "\"port\":8558}]}");
    run_free(&r);

    /* ... which is management.port when that is set. */
    const char *sel2[] = {PEKKO_SELECTOR, PEKKO_SERVICE, "UKKO_MANAGEMENT_PORT=8600", NULL};
    r = discover("{\"discovery\": {\"kubernetes-api\": {\"pod-port-name\": null}}}", sel2);
    cr_expect(strstr(r.out, "\"port\":8600"), "the default port follows management.port: %s",
              r.out);
    run_free(&r);
}

#define MESH_NS "b58dbc88-3651-4fb4-8408-60c375592d1d"
#define MESH_SELECTOR "UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR=app.kubernetes.io/name=%s"
#define MESH_SERVICE "UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=mesh"
#define MESH_POINT "{\"pod\":\"mesh-b4b946946-g8vfj\",\"host\":\"10.8.7.9\",\"port\":8558}"

Test(discover_cli, multi_container_pod_with_and_without_container_filter, .timeout = 180)
{
    serve_shared("multi-container-pod.json", MESH_NS);
    run_t r = discover(NULL, (const char *[]){MESH_SELECTOR, MESH_SERVICE, NULL});
    expect_line(&r, "{\"contact_points\":[" MESH_POINT "]}");
    run_free(&r);

    r = discover(NULL, (const char *[]){MESH_SELECTOR, MESH_SERVICE,
                                        "UKKO_DISCOVERY_KUBERNETES_API_CONTAINER_NAME=user-function",
                                        NULL});
    expect_line(&r, "{\"contact_points\":[" MESH_POINT "]}");
    run_free(&r);

    r = discover(NULL,
                 (const char *[]){MESH_SELECTOR, MESH_SERVICE,
                                  "UKKO_DISCOVERY_KUBERNETES_API_CONTAINER_NAME=cloudstate-sidecar",
                                  NULL});
    expect_line(&r, "{\"contact_points\":[]}");
    cr_expect(strstr(r.err, "1 with the container absent or waiting"), "%s", r.err);
    run_free(&r);
}

Test(discover_cli, pending_pod_without_ip_gives_none, .timeout = 180)
{
    serve_shared("multi-container-pod-pending.json", MESH_NS);
    run_t r = discover(NULL, (const char *[]){MESH_SELECTOR, MESH_SERVICE, NULL});
    expect_line(&r, "{\"contact_points\":[]}");
    cr_expect(strstr(r.err, "1 without an IP"), "%s", r.err);
    run_free(&r);
}

Test(discover_cli, failures_exit_1_with_the_cause, .timeout = 180)
{
    const char *extra[] = {"--namespace", "ukko", NULL};
    cr_assert_eq(ut_emulator_start(&em, UKKO_SOURCE_DIR "/tests/emulator/fixtures/statefulset-pods.json",
                                   extra),
                 0);
    char forbidden[900];
    snprintf(forbidden, sizeof(forbidden),
             "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s/token-forbidden", em.dir);
    /* ut_exec sets env in order: the later token path wins. */
    run_t r = discover(NULL, (const char *[]){forbidden, NULL});
    cr_expect_eq(r.code, 1, "a failed lookup exits 1, got %d", r.code);
    cr_expect_str_eq(r.out, "", "nothing on stdout when the lookup failed");
    cr_expect(strstr(r.err, "403 Forbidden") && strstr(r.err, "\"list\" on \"pods\""),
              "stderr names the RBAC cause: %s", r.err);
    run_free(&r);

    /* The same lookup with the pod's own token works: 3 points. */
    r = discover(NULL, NULL);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"host\":\"127.0.0.4\""), "%s", r.out);
    run_free(&r);

    r = discover(NULL, (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=soon", NULL});
    cr_expect_eq(r.code, 2, "a bad config exits 2, got %d", r.code);
    cr_expect(strstr(r.err, "discovery.kubernetes-api.resolve-timeout"), "names the key: %s",
              r.err);
    run_free(&r);
}

Test(discover_cli, static_method_needs_no_server, .timeout = 60)
{
    const char *env[] = {"UKKO_DISCOVERY_METHOD=static",
                         "UKKO_DISCOVERY_STATIC_CONTACT_POINTS=127.0.0.55:8558,[::1]:8558", NULL};
    const char *argv[] = {UKKO_BIN, "discover", "--once", NULL};
    run_t r = {0};
    cr_assert_eq(ut_exec(argv, env, 30000, &r.out, &r.err, &r.code), 0);
    expect_line(&r, "{\"contact_points\":[{\"pod\":\"\",\"host\":\"127.0.0.55\",\"port\":8558},"
                    "{\"pod\":\"\",\"host\":\"::1\",\"port\":8558}]}");
    run_free(&r);
}
