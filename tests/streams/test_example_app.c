/* Integration: an application built as a shared library (examples/clicks,
 * node/program.c's --app path) runs like the built-in demo: `ukko run --app
 * build/examples/libukko_example_clicks.so` on 127.0.6.8 against a real
 * Kafka broker counts each user's clicks into clicks-per-user, and a click
 * that is no page path goes to clicks.dlq once; a path that is no
 * application is refused with exit 2 and a message saying what to export.
 * SKIPPED where no real Kafka can run (the refusals run everywhere). */
#include "feed_support.h"
#include "ukko_kafka.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define LIB UKKO_BINARY_DIR "/examples/libukko_example_clicks.so"

static ukko_kafka_rig_t rig;
static char *dir;
static pid_t node;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    ukko_kafka_rig_share(&rig, NULL);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    ukko_kafka_rig_stop(&rig);
}

static void setup(void)
{
    dir = ut_tempdir();
    cr_assert(dir);
}

static void teardown(void)
{
    if (node > 0) {
        kill(node, SIGKILL);
        waitpid(node, NULL, 0);
        node = 0;
    }
    if (dir) {
        ut_rmtree(dir);
        free(dir);
        dir = NULL;
    }
}

TestSuite(example_app, .init = setup, .fini = teardown, .timeout = 300);

Test(example_app, a_path_that_is_no_application_is_refused)
{
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s run --app %s/nothing-here.so", UKKO_BIN, dir);
    cr_assert_eq(ut_run(cmd, NULL, &out), 2, "a missing library: exit 2");
    cr_assert(strstr(out.data, "cannot load it"), "says why: %s", out.data);
    ukko_buf_reset(&out);
    /* A shared library without the entry point: libcjson is one. */
    snprintf(cmd, sizeof(cmd), "%s run --app \"$(ls /usr/lib/*/libcjson.so.1 | head -1)\"",
             UKKO_BIN);
    cr_assert_eq(ut_run(cmd, NULL, &out), 2, "a library that is no application: exit 2");
    cr_assert(strstr(out.data, "const ukko_app_t ukko_app"), "says what to export: %s", out.data);
    ukko_buf_destroy(&out);
}

Test(example_app, the_clicks_example_counts_views_per_user)
{
    ukko_kafka_rig_t k;
    int rc = ukko_kafka_rig_attach(&k);
    if (rc == UKKO_KAFKA_RIG_SKIP) {
        printf("%s\n", k.why);
        fflush(stdout);
        cr_skip_test("%s", k.why);
    }
    cr_assert_eq(rc, 0, "%s", k.why);
    cr_assert_eq(ukko_kafka_rig_topic(&k, "clicks", 3, 0), 0, "%s", k.why);
    cr_assert_eq(ukko_kafka_rig_topic(&k, "clicks-per-user", 3, 0), 0, "%s", k.why);
    cr_assert_eq(ukko_kafka_rig_topic(&k, "clicks.dlq", 1, 0), 0, "%s", k.why);
    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = 0; i < 300; i++)
        (void)ukko_buf_printf(&lines, "user%d\t/page/%d\n", i % 7, i);
    (void)ukko_buf_puts(&lines, "user3\tnot-a-path\n");
    kc_produce(k.bootstrap, "clicks", lines.data);
    ukko_buf_destroy(&lines);

    char ring[600], kr[700], kb[600], logp[600];
    snprintf(ring, sizeof(ring), "%s/ring.json", dir);
    ukko_buf_t key;
    ukko_buf_init(&key, 4096);
    cr_assert_eq(ut_run("openssl rand -base64 32", NULL, &key), 0);
    FILE *f = fopen(ring, "w");
    cr_assert(f);
    fprintf(f, "[\"%.44s\"]\n", key.data);
    fclose(f);
    ukko_buf_destroy(&key);
    snprintf(kr, sizeof(kr), "UKKO_CLUSTER_KEYRING_PATH=%s", ring);
    snprintf(kb, sizeof(kb), "UKKO_KAFKA_BOOTSTRAP_SERVERS=%s", k.bootstrap);
    snprintf(logp, sizeof(logp), "%s/node.log", dir);
    const char *env[] = {"UKKO_MANAGEMENT_HOSTNAME=127.0.6.8", "UKKO_MANAGEMENT_PORT=8558",
                         "UKKO_CLUSTER_HOSTNAME=127.0.6.8", "UKKO_CLUSTER_SEED_NODES=127.0.6.8:7355",
                         kr, kb, "UKKO_LOG_FORMAT=text", "UKKO_KAFKA_RETRY_BACKOFF=20ms", NULL};
    const char *argv[] = {UKKO_BIN, "run", "--app", LIB, NULL};
    node = ut_spawn(argv, env, logp);
    cr_assert_neq(node, -1);
    cr_assert(ut_wait_status("127.0.6.8", 8558, "/ready", 200, 60000), "the node never got ready");

    krec_t *out = NULL;
    size_t nout = 0;
    int64_t end = ukko_now_ms() + 120000;
    for (;;) {
        nout = kc_read(k.bootstrap, "clicks-per-user", &out);
        if (nout >= 300)
            break;
        kc_free(out, nout);
        cr_assert_lt(ukko_now_ms(), end, "clicks-per-user holds %zu of 300 records", nout);
        usleep(300 * 1000);
    }
    cr_assert_eq(nout, 300);
    /* Per user, views count up 1, 2, 3... in the output's order. */
    long long last[7] = {0};
    for (size_t i = 0; i < nout; i++) {
        cJSON *v = cJSON_Parse(out[i].value);
        const char *user = cJSON_GetStringValue(cJSON_GetObjectItem(v, "user"));
        cr_assert(user && !strncmp(user, "user", 4), "%s", out[i].value);
        int u = atoi(user + 4);
        cr_assert(u >= 0 && u < 7);
        long long views = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(v, "views"));
        cr_assert_eq(views, last[u] + 1, "%s: views %lld after %lld", user, views, last[u]);
        last[u] = views;
        cJSON_Delete(v);
    }
    kc_free(out, nout);
    krec_t *dlq;
    size_t ndlq = 0;
    end = ukko_now_ms() + 60000;
    while ((ndlq = kc_read(k.bootstrap, "clicks.dlq", &dlq)) == 0) {
        kc_free(dlq, ndlq);
        cr_assert_lt(ukko_now_ms(), end, "no dead letter for the click that is no path");
        usleep(300 * 1000);
    }
    cr_assert_eq(ndlq, 1);
    cr_assert_str_eq(dlq[0].value, "not-a-path");
    cr_assert(strstr(dlq[0].headers, "ukko.dlq.topic=clicks"), "%s", dlq[0].headers);
    kc_free(dlq, ndlq);
    cr_assert_eq(ut_stop(node, SIGTERM, 30000), 0, "the node's orderly stop");
    node = 0;
}
