/* test_discovery.c: the discovery object (discovery/discovery.c) on a real
 * libev loop, with the static method and with failures that need no server:
 * results come from the loop (never from inside the call), waiters share a
 * lookup, a callback may free the discovery, the refresh reports changes
 * only, and the metrics count what happened. */
#include "discovery.h"
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    ukko_config_t *cfg;
    ukko_discovery_config_t dc;
    struct ev_loop *loop;
    ukko_discovery_t *d;
} fixture_t;

static void setup(fixture_t *f, char *const *env, int default_port)
{
    memset(f, 0, sizeof(*f));
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_TEXT);
    f->cfg = ukko_config_new();
    cr_assert_eq(ukko_discovery_config_register(f->cfg, &f->dc), 0);
    cr_assert_eq(ukko_config_load(f->cfg, NULL, env), 0, "config: %s",
                 ukko_config_error(f->cfg, 0));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->d = ukko_discovery_new(&f->dc, f->loop, default_port);
}

static void teardown(fixture_t *f)
{
    ukko_discovery_free(f->d);
    ev_loop_destroy(f->loop);
    ukko_config_free(f->cfg);
}

typedef struct seen {
    int calls;
    int status;
    ukko_discovery_failure_t failure;
    char points[1024];
    char error[1024];
    bool free_in_cb;
    bool stop_loop;
} seen_t;

static void on_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    seen_t *s = ud;
    s->calls++;
    s->status = res->status;
    s->failure = res->failure;
    snprintf(s->error, sizeof(s->error), "%s", res->error ? res->error : "");
    size_t j = 0;
    s->points[0] = '\0';
    for (size_t i = 0; i < res->points->n; i++) {
        char a[128];
        ukko_discovery_authority(&res->points->v[i], a, sizeof(a));
        j += (size_t)snprintf(s->points + j, sizeof(s->points) - j, "%s%s", i ? "," : "", a);
    }
    if (s->free_in_cb)
        ukko_discovery_free(d);
}

/* Runs the loop until *counter reaches want or the deadline passes. */
static void run_until(struct ev_loop *loop, const int *counter, int want, double seconds)
{
    ev_tstamp deadline = ev_time() + seconds;
    while (*counter < want && ev_time() < deadline)
        ev_run(loop, EVRUN_ONCE);
}

static char *static_env[] = {"UKKO_DISCOVERY_METHOD=static",
                             "UKKO_DISCOVERY_STATIC_CONTACT_POINTS=127.0.0.81:8558,127.0.0.80:8558",
                             NULL};

Test(discovery, static_lookup_answers_from_the_loop, .timeout = 10)
{
    fixture_t f;
    setup(&f, static_env, 8558);
    cr_assert_not_null(f.d);
    seen_t a = {0}, b = {0};
    cr_assert_eq(ukko_discovery_lookup(f.d, on_result, &a), 0);
    cr_assert_eq(ukko_discovery_lookup(f.d, on_result, &b), 0);
    cr_expect_eq(a.calls, 0, "the callback must not run inside ukko_discovery_lookup");
    run_until(f.loop, &b.calls, 1, 5);
    cr_expect_eq(a.calls, 1, "each waiter is called once");
    cr_expect_eq(b.calls, 1, "a second waiter shares the lookup");
    cr_expect_eq(a.status, 0);
    cr_expect_str_eq(a.points, "127.0.0.80:8558,127.0.0.81:8558", "sorted by address");
    int64_t at = 0;
    cr_expect_eq(ukko_discovery_last(f.d, &at)->n, 2);
    cr_expect_gt(at, 0);
    teardown(&f);
}

Test(discovery, a_callback_may_free_the_discovery, .timeout = 10)
{
    fixture_t f;
    setup(&f, static_env, 8558);
    seen_t a = {.free_in_cb = true}, b = {0};
    cr_assert_eq(ukko_discovery_lookup(f.d, on_result, &a), 0);
    cr_assert_eq(ukko_discovery_lookup(f.d, on_result, &b), 0);
    run_until(f.loop, &a.calls, 1, 5);
    cr_expect_eq(a.calls, 1);
    cr_expect_eq(b.calls, 0, "waiters after a free are not called");
    f.d = NULL; /* freed by the callback; ASan checks nothing is touched after */
    teardown(&f);
}

typedef struct changes {
    int calls;
    int n;
} changes_t;

static void on_change(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    changes_t *c = ud;
    c->calls++;
    c->n = (int)res->points->n;
}

static double metric(ukko_discovery_t *d, const char *sample)
{
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    ukko_discovery_metrics(&out, d);
    /* A sample starts a line; the name also appears in the # HELP line. */
    char line[256];
    snprintf(line, sizeof(line), "\n%s", sample);
    const char *p = strstr(out.data, line);
    double v = p ? strtod(p + strlen(line), NULL) : -1;
    ukko_buf_destroy(&out);
    return v;
}

typedef struct poll_state {
    int lookups;
    ukko_discovery_t *d;
} poll_state_t;

static void count_lookups(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    poll_state_t *st = w->data;
    st->lookups = (int)metric(st->d, "ukko_discovery_lookups_total ");
}

Test(discovery, refresh_reports_the_first_set_then_changes_only, .timeout = 20)
{
    fixture_t f;
    setup(&f, static_env, 8558);
    changes_t c = {0};
    cr_assert_eq(ukko_discovery_start(f.d, 100, on_change, &c), 0);
    cr_expect_eq(ukko_discovery_start(f.d, 100, on_change, &c), UKKO_EINVAL,
                 "a second start must be refused");
    /* Poll the lookup counter: four refreshes of an unchanged set. */
    poll_state_t st = {0, f.d};
    ev_timer t;
    ev_timer_init(&t, count_lookups, 0.05, 0.05);
    t.data = &st;
    ev_timer_start(f.loop, &t);
    run_until(f.loop, &st.lookups, 4, 10);
    ev_timer_stop(f.loop, &t);
    cr_expect_geq(st.lookups, 4, "the refresh should keep looking up, saw %d", st.lookups);
    cr_expect_eq(c.calls, 1, "an unchanged set is reported once, got %d calls", c.calls);
    cr_expect_eq(c.n, 2);
    ukko_discovery_stop(f.d);
    cr_expect_eq(metric(f.d, "ukko_discovery_contact_points "), 2);
    teardown(&f);
}

Test(discovery, kubernetes_api_needs_a_server_address, .timeout = 10)
{
    unsetenv("KUBERNETES_SERVICE_HOST");
    char *env[] = {"UKKO_DISCOVERY_METHOD=kubernetes-api", NULL};
    fixture_t f;
    setup(&f, env, 8558);
    cr_expect_null(f.d, "without KUBERNETES_SERVICE_HOST nor api-server there is no discovery");
    teardown(&f);
}

Test(discovery, auto_is_static_outside_a_pod_and_the_api_inside, .timeout = 10)
{
    unsetenv("KUBERNETES_SERVICE_HOST");
    fixture_t f;
    setup(&f, NULL, 8558);
    cr_expect_eq(f.dc.method, UKKO_DISCOVERY_AUTO, "auto is the default");
    cr_expect_eq(ukko_discovery_method(&f.dc), UKKO_DISCOVERY_STATIC,
                 "outside a pod, auto is the static list");
    cr_expect_not_null(f.d, "an empty static list is a discovery that finds nobody");
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    cr_expect_eq(ukko_discovery_method(&f.dc), UKKO_DISCOVERY_KUBERNETES_API,
                 "in a pod (KUBERNETES_SERVICE_HOST set), auto is the Kubernetes API");
    unsetenv("KUBERNETES_SERVICE_HOST");
    teardown(&f);
    char *env[] = {"UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.1:6443", NULL};
    setup(&f, env, 8558);
    cr_expect_eq(ukko_discovery_method(&f.dc), UKKO_DISCOVERY_KUBERNETES_API,
                 "an api-server set means the Kubernetes API");
    teardown(&f);
}

Test(discovery, unreadable_token_fails_the_lookup_from_the_loop, .timeout = 10)
{
    char *env[] = {"UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.90:1",
                   "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=/nonexistent/token",
                   "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE=shop", NULL};
    fixture_t f;
    setup(&f, env, 8558);
    cr_assert_not_null(f.d);
    seen_t a = {0};
    cr_assert_eq(ukko_discovery_lookup(f.d, on_result, &a), 0);
    cr_expect_eq(a.calls, 0);
    run_until(f.loop, &a.calls, 1, 5);
    cr_assert_eq(a.calls, 1);
    cr_expect_eq(a.failure, UKKO_DISCOVERY_FAIL_CONFIG);
    cr_expect(strstr(a.error, "/nonexistent/token") != NULL, "the message names the file: %s",
              a.error);
    cr_expect_eq(metric(f.d, "ukko_discovery_lookup_failures_total{reason=\"config\"} "), 1);
    teardown(&f);
}

Test(discovery, refused_connection_is_a_connect_failure_and_retried, .timeout = 20)
{
    char *dir = ut_tempdir();
    char tok[600], ca[600], e1[700], e2[700];
    snprintf(tok, sizeof(tok), "%s/token", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    ut_write_file(tok, "abc\n");
    ut_write_file(ca, "not a certificate\n");
    snprintf(e1, sizeof(e1), "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s", tok);
    snprintf(e2, sizeof(e2), "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s", ca);
    char *env[] = {"UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.90:1", e1, e2,
                   "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE=shop",
                   "UKKO_DISCOVERY_BACKOFF_MIN=10ms", "UKKO_DISCOVERY_BACKOFF_MAX=40ms", NULL};
    fixture_t f;
    setup(&f, env, 8558);
    cr_assert_not_null(f.d);
    changes_t c = {0};
    cr_assert_eq(ukko_discovery_start(f.d, 1000, on_change, &c), 0);
    int fails = 0;
    ev_tstamp deadline = ev_time() + 10;
    while (fails < 3 && ev_time() < deadline) {
        ev_run(f.loop, EVRUN_ONCE);
        fails = (int)metric(f.d, "ukko_discovery_lookup_failures_total{reason=\"connect\"} ");
    }
    cr_expect_geq(fails, 3, "failed lookups are retried with backoff; saw %d", fails);
    cr_expect_eq(c.calls, 0, "failures never call on_change");
    teardown(&f);
    ut_rmtree(dir);
    free(dir);
}
