/* test_k8s_watch.c: what bootstrap asks of discovery, through the real
 * HTTPS path against the emulator: the refresh that lists once and then
 * follows a watch=true stream (changes arrive without polling; a stopped
 * refresh asks nothing more), and the expected size read from the owning
 * StatefulSet (and what a 403 says). Each test starts its own emulator. */
#include "discovery.h"
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ut_emulator_t em;

static void stop_emulator(void)
{
    ut_emulator_stop(&em);
}

TestSuite(k8s_watch, .fini = stop_emulator);

typedef struct client {
    ukko_config_t *cfg;
    ukko_discovery_config_t dc;
    struct ev_loop *loop;
    ukko_discovery_t *d;
    char store[8][1024];
    char *env[9];
} client_t;

static void client_new(client_t *c, const char *token_file, const char *pod_name)
{
    memset(c, 0, sizeof(*c));
    ukko_log_setup(getenv("TEST_LOG") ? UKKO_LOG_DEBUG : UKKO_LOG_OFF, UKKO_LOG_TEXT);
    size_t n = 0;
    snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.1:%d",
             em.port);
    snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s/ca.crt", em.dir);
    snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s/%s", em.dir,
             token_file);
    snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH=%s/namespace",
             em.dir);
    /* Polling this often would show at once in the request counts. */
    snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_REFRESH_INTERVAL=100ms");
    if (pod_name)
        snprintf(c->store[n++], 1024, "UKKO_DISCOVERY_KUBERNETES_API_POD_NAME=%s", pod_name);
    for (size_t i = 0; i < n; i++)
        c->env[i] = c->store[i];
    c->env[n] = NULL;
    c->cfg = ukko_config_new();
    cr_assert_eq(ukko_discovery_config_register(c->cfg, &c->dc), 0);
    cr_assert_eq(ukko_config_load(c->cfg, NULL, c->env), 0, "config: %s",
                 ukko_config_error(c->cfg, 0));
    c->loop = ev_loop_new(EVFLAG_AUTO);
    c->d = ukko_discovery_new(&c->dc, c->loop, 8558);
    cr_assert_not_null(c->d);
}

static void client_free(client_t *c)
{
    ukko_discovery_free(c->d);
    ev_loop_destroy(c->loop);
    ukko_config_free(c->cfg);
}

typedef struct changes {
    int calls;
    char points[1024]; /* "pod@host:port,..." of the last call */
} changes_t;

static void on_change(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    changes_t *ch = ud;
    ch->calls++;
    size_t j = 0;
    ch->points[0] = '\0';
    for (size_t i = 0; i < res->points->n; i++) {
        char a[128];
        ukko_discovery_authority(&res->points->v[i], a, sizeof(a));
        j += (size_t)snprintf(ch->points + j, sizeof(ch->points) - j, "%s%s@%s", i ? "," : "",
                              res->points->v[i].pod, a);
    }
}

/* Runs the loop until the set reads want (deadline 20 s). */
static void wait_points(client_t *c, changes_t *ch, const char *want)
{
    ev_tstamp deadline = ev_time() + 20;
    while (strcmp(ch->points, want) && ev_time() < deadline)
        ev_run(c->loop, EVRUN_ONCE);
    cr_assert_str_eq(ch->points, want, "the watched set should become %s", want);
}

static void on_run_for(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop for a while: to see that nothing happens. */
static void run_for(client_t *c, double seconds)
{
    ev_timer t;
    ev_timer_init(&t, on_run_for, seconds, 0.);
    ev_timer_start(c->loop, &t);
    ev_tstamp end = ev_time() + seconds;
    while (ev_time() < end)
        ev_run(c->loop, EVRUN_ONCE);
    ev_timer_stop(c->loop, &t);
}

static void ctl(const char *const *args)
{
    cr_assert_eq(ut_emulator_ctl(&em, args, NULL), 0, "emulator ctl %s failed", args[0]);
}

/* Requests the emulator saw since the last reset: GET of path, lists (no
 * watch=true) or watches. */
static int counted(const char *path, bool watches)
{
    char *out = NULL;
    const char *args[] = {"requests", NULL};
    cr_assert_eq(ut_emulator_ctl(&em, args, &out), 0);
    cJSON *j = cJSON_Parse(out ? out : "");
    free(out);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "recent"))
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(r, "method"));
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r, "path"));
        const char *q = cJSON_GetStringValue(cJSON_GetObjectItem(r, "query"));
        if (m && p && !strcmp(m, "GET") && !strcmp(p, path) &&
            (q && strstr(q, "watch=true")) == watches)
            n++;
    }
    cJSON_Delete(j);
    return n;
}

static const char *running_pod(char *buf, size_t n, const char *name, const char *ip)
{
    snprintf(buf, n,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"app\":\"ukko\"},\"ownerReferences\":[{\"apiVersion\":\"apps/v1\","
             "\"kind\":\"StatefulSet\",\"name\":\"ukko\",\"uid\":\"x\",\"controller\":true}]},"
             "\"spec\":{\"containers\":[{\"name\":\"ukko\",\"image\":\"ukko\",\"ports\":[{\"name\":"
             "\"management\",\"containerPort\":8558}]}]},"
             "\"status\":{\"phase\":\"Running\",\"podIP\":\"%s\"}}",
             name, ip);
    return buf;
}

#define PODS "/api/v1/namespaces/default/pods"

Test(k8s_watch, a_refresh_lists_once_then_follows_the_watch, .timeout = 120)
{
    cr_assert_eq(ut_emulator_start(&em, NULL, (const char *[]){"--generate-pods", "2", NULL}), 0);
    client_t c;
    client_new(&c, "token", NULL);
    changes_t ch = {0};
    cr_assert_eq(ukko_discovery_start(c.d, 0, on_change, &ch), 0);
    wait_points(&c, &ch, "ukko-0@10.1.0.1:8558,ukko-1@10.1.0.2:8558");
    cr_expect(ukko_discovery_fresh(c.d), "a set just listed is current");
    ctl((const char *[]){"reset-requests", NULL});

    char pod[1024];
    ctl((const char *[]){"request", "POST", PODS, running_pod(pod, sizeof(pod), "ukko-2", "10.1.0.3"),
                         NULL});
    wait_points(&c, &ch, "ukko-0@10.1.0.1:8558,ukko-1@10.1.0.2:8558,ukko-2@10.1.0.3:8558");
    ctl((const char *[]){"request", "DELETE", PODS "/ukko-0", NULL});
    wait_points(&c, &ch, "ukko-1@10.1.0.2:8558,ukko-2@10.1.0.3:8558");
    /* A pod that stops running leaves the set too (MODIFIED, not DELETED). */
    ctl((const char *[]){"request", "PATCH", PODS "/ukko-1/status",
                         "{\"status\":{\"phase\":\"Failed\"}}", "--content-type",
                         "application/merge-patch+json", NULL});
    wait_points(&c, &ch, "ukko-2@10.1.0.3:8558");
    run_for(&c, 1.0);
    cr_expect_eq(counted(PODS, false), 0,
                 "the changes came on the watch: no list was asked for (refresh-interval is "
                 "100ms, so polling would have made about 10)");
    cr_expect_leq(counted(PODS, true), 1, "one watch stream did it all");
    cr_expect(ukko_discovery_fresh(c.d));

    ukko_discovery_stop(c.d);
    cr_expect_not(ukko_discovery_fresh(c.d), "a stopped refresh holds no current set");
    ctl((const char *[]){"reset-requests", NULL});
    ctl((const char *[]){"request", "POST", PODS, running_pod(pod, sizeof(pod), "ukko-3", "10.1.0.4"),
                         NULL});
    int before = ch.calls;
    run_for(&c, 0.5);
    cr_expect_eq(ch.calls, before, "a stopped refresh reports nothing");
    cr_expect_eq(counted(PODS, false) + counted(PODS, true), 0, "and asks the API nothing");
    client_free(&c);
}

typedef struct expected {
    int calls, replicas;
    char why[700];
} expected_t;

static void on_expected(ukko_discovery_t *d, int replicas, const char *why, void *ud)
{
    (void)d;
    expected_t *e = ud;
    e->calls++;
    e->replicas = replicas;
    snprintf(e->why, sizeof(e->why), "%s", why);
}

static expected_t expected_of(const char *token, const char *pod)
{
    client_t c;
    client_new(&c, token, pod);
    expected_t e = {0};
    cr_assert_eq(ukko_discovery_expected(c.d, on_expected, &e), 0);
    cr_expect_eq(e.calls, 0, "the answer comes from the loop, never inside the call");
    ev_tstamp deadline = ev_time() + 30;
    while (!e.calls && ev_time() < deadline)
        ev_run(c.loop, EVRUN_ONCE);
    cr_assert_eq(e.calls, 1);
    client_free(&c);
    return e;
}

Test(k8s_watch, the_expected_size_is_the_owning_statefulsets_replicas, .timeout = 120)
{
    cr_assert_eq(ut_emulator_start(&em, NULL, (const char *[]){"--statefulset", "ukko=4", NULL}),
                 0);
    char pod[1024];
    ctl((const char *[]){"request", "POST", PODS, running_pod(pod, sizeof(pod), "ukko-1", "10.1.0.9"),
                         NULL});
    expected_t e = expected_of("token", "ukko-1");
    cr_expect_eq(e.replicas, 4, "spec.replicas of the owner: %s", e.why);
    /* No such pod (yet): the name says which set, as StatefulSets name pods. */
    e = expected_of("token", "ukko-7");
    cr_expect_eq(e.replicas, 4, "by the name convention: %s", e.why);
    e = expected_of("token", "standalone");
    cr_expect_eq(e.replicas, 0, "no StatefulSet: not known");
    /* No RBAC: not known, and the message says which right is missing. */
    e = expected_of("token-forbidden", "ukko-1");
    cr_expect_eq(e.replicas, 0);
    cr_expect(strstr(e.why, "403") && strstr(e.why, "statefulsets"),
              "the reason names the 403 and the resource: %s", e.why);
}
