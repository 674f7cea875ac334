/* test_k8s_api.c: the Kubernetes-API lookup (discovery/k8s_api.c over
 * discovery/curl_ev.c) through the real HTTPS path against the emulator
 * (tests/emulator/kube_api_emulator.py): TLS with its CA, bearer tokens and
 * their rotation, 401/403/404/500, a server slower than the timeout, bodies
 * cut short or malformed, size caps, IPv6 and 10,000 pods. Each test starts
 * its own emulator and stops it, whatever the outcome. */
#include "discovery.h"
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMU_FIXTURES UKKO_SOURCE_DIR "/tests/emulator/fixtures/"
#define OWN UKKO_SOURCE_DIR "/tests/discovery/fixtures/"

static ut_emulator_t em;

static void stop_emulator(void)
{
    ut_emulator_stop(&em);
}

/* ---------------------------------------------------------- the client */

typedef struct client {
    ukko_config_t *cfg;
    ukko_discovery_config_t dc;
    struct ev_loop *loop;
    ukko_discovery_t *d;
    char env_store[12][1024];
    char *env[16];
    size_t nenv;
} client_t;

typedef struct outcome {
    int calls;
    int status;
    ukko_discovery_failure_t failure;
    int http_status;
    size_t n;
    char first[160], last[160];
    char error[2048];
    bool all_default_port;
} outcome_t;

static void add_env(client_t *c, const char *key, const char *value)
{
    cr_assert_lt(c->nenv, 12);
    snprintf(c->env_store[c->nenv], sizeof(c->env_store[0]), "%s%s", key, value);
    c->env[c->nenv] = c->env_store[c->nenv];
    c->nenv++;
    c->env[c->nenv] = NULL;
}

/* A discovery pointed at the emulator, as a pod's would be (token, CA and
 * namespace files from its state dir); extra "K=V" overrides (NULL-ended). */
static void client_new(client_t *c, const char *const *extra)
{
    memset(c, 0, sizeof(*c));
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_TEXT);
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", em.port);
    add_env(c, "UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=", url);
    char path[900];
    snprintf(path, sizeof(path), "%s/ca.crt", em.dir);
    add_env(c, "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=", path);
    snprintf(path, sizeof(path), "%s/token", em.dir);
    add_env(c, "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=", path);
    snprintf(path, sizeof(path), "%s/namespace", em.dir);
    add_env(c, "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH=", path);
    for (const char *const *x = extra; x && *x; x++)
        add_env(c, "", *x); /* later entries win: the loader reads in order */
    c->cfg = ukko_config_new();
    cr_assert_eq(ukko_discovery_config_register(c->cfg, &c->dc), 0);
    /* An override given twice: keep the last (env_get finds the first). */
    for (size_t i = 0; i < c->nenv; i++)
        for (size_t j = i + 1; j < c->nenv; j++) {
            size_t k = (size_t)(strchr(c->env[i], '=') - c->env[i]);
            if (!strncmp(c->env[i], c->env[j], k + 1))
                c->env[i] = "UNUSED_OVERRIDDEN=1";
        }
    cr_assert_eq(ukko_config_load(c->cfg, NULL, c->env), 0, "config: %s",
                 ukko_config_error(c->cfg, 0));
    c->loop = ev_loop_new(EVFLAG_AUTO);
    c->d = ukko_discovery_new(&c->dc, c->loop, 8558);
    cr_assert_not_null(c->d, "the discovery could not be created");
}

static void client_free(client_t *c)
{
    ukko_discovery_free(c->d);
    ev_loop_destroy(c->loop);
    ukko_config_free(c->cfg);
}

static void on_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    outcome_t *o = ud;
    o->calls++;
    o->status = res->status;
    o->failure = res->failure;
    o->http_status = res->http_status;
    o->n = res->points->n;
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
    o->all_default_port = true;
    for (size_t i = 0; i < res->points->n; i++)
        if (res->points->v[i].port != 8558)
            o->all_default_port = false;
    if (o->n) {
        ukko_discovery_authority(&res->points->v[0], o->first, sizeof(o->first));
        ukko_discovery_authority(&res->points->v[o->n - 1], o->last, sizeof(o->last));
    }
}

/* One lookup, run on the loop until its callback came (deadline 60 s). */
static outcome_t lookup(client_t *c)
{
    outcome_t o;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(ukko_discovery_lookup(c->d, on_result, &o), 0);
    ev_tstamp deadline = ev_time() + 60;
    while (o.calls == 0 && ev_time() < deadline)
        ev_run(c->loop, EVRUN_ONCE);
    cr_assert_eq(o.calls, 1, "the lookup never finished");
    return o;
}

static outcome_t lookup_with(const char *const *extra)
{
    client_t c;
    client_new(&c, extra);
    outcome_t o = lookup(&c);
    client_free(&c);
    return o;
}

static const char *const shop_ns[] = {"--namespace", "shop", NULL};

static void start(const char *pods, const char *const *extra)
{
    cr_assert_eq(ut_emulator_start(&em, pods, extra), 0, "the emulator did not start");
}

static void ctl(const char *a, const char *b)
{
    const char *args[] = {a, b, NULL};
    cr_assert_eq(ut_emulator_ctl(&em, args, NULL), 0, "emulator ctl %s %s failed", a, b ? b : "");
}

/* -------------------------------------------------------------- tests */

TestSuite(k8s_api, .fini = stop_emulator);

Test(k8s_api, recorded_pod_list_over_tls, .timeout = 120)
{
    const char *dir = ut_shared_fixtures();
    char pods[1024];
    snprintf(pods, sizeof(pods), "%s/pods.json", dir ? dir : "");
    start(dir ? pods : OWN "shop-pods.json", dir ? NULL : shop_ns);
    const char *sel[] = {dir ? "UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR=appName=%s"
                             : "UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR=app=%s",
                         dir ? "UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME="
                               "pekko-cluster-tooling-example"
                             : "UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop",
                         NULL};
    outcome_t o = lookup_with(sel);
    cr_assert_eq(o.status, 0, "lookup failed: %s", o.error);
    cr_expect_eq(o.http_status, 200);
    if (dir) {
        cr_expect_eq(o.n, 2);
        cr_expect_str_eq(o.first, "172.17.0.4:10001");
        cr_expect_str_eq(o.last, "172.17.0.6:10001");
    } else {
        cr_expect_eq(o.n, 3);
    }
}

Test(k8s_api, http_errors_name_their_cause, .timeout = 120)
{
    start(EMU_FIXTURES "statefulset-pods.json", (const char *[]){"--namespace", "ukko", NULL});

    char bad[900], forbidden[900], e1[1000], e2[1000];
    snprintf(bad, sizeof(bad), "%s/bad-token", em.dir);
    ut_write_file(bad, "not-a-token-the-server-knows\n");
    snprintf(e1, sizeof(e1), "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s", bad);
    outcome_t o = lookup_with((const char *[]){e1, NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_UNAUTHORIZED, "401 expected: %s", o.error);
    cr_expect(strstr(o.error, "401") && strstr(o.error, bad), "names the token file: %s",
              o.error);
    cr_expect(!strstr(o.error, "not-a-token"), "the token itself must never be shown");

    snprintf(forbidden, sizeof(forbidden), "%s/token-forbidden", em.dir);
    snprintf(e2, sizeof(e2), "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s", forbidden);
    o = lookup_with((const char *[]){e2, NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_FORBIDDEN, "403 expected: %s", o.error);
    cr_expect(strstr(o.error, "Role") && strstr(o.error, "\"list\" on \"pods\"") &&
                  strstr(o.error, "\"ukko\""),
              "names the Role, the verb, the resource and the namespace: %s", o.error);

    o = lookup_with((const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE=nope", NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_NOT_FOUND, "404 expected: %s", o.error);
    cr_expect(strstr(o.error, "\"nope\"") && strstr(o.error, "pod-namespace"),
              "names the namespace and the key: %s", o.error);

    ctl("fault", "{\"path\": \"pods\", \"status\": 500, \"count\": 1}");
    o = lookup_with(NULL);
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_SERVER, "500 expected: %s", o.error);
    cr_expect_eq(o.http_status, 500);

    ctl("fault", "{\"path\": \"pods\", \"drop\": true, \"count\": 1}");
    o = lookup_with(NULL);
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_CONNECT, "a dropped connection: %s", o.error);
    cr_expect(strstr(o.error, "closed without a whole answer"), "%s", o.error);

    o = lookup_with(NULL);
    cr_expect_eq(o.status, 0, "after the faults the next lookup succeeds: %s", o.error);
    cr_expect_eq(o.n, 3);
}

Test(k8s_api, wrong_ca_says_so, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    char key[900], crt[900];
    snprintf(key, sizeof(key), "%s/other-ca.key", em.dir);
    snprintf(crt, sizeof(crt), "%s/other-ca.crt", em.dir);
    const char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                          "-days", "2", "-subj", "/CN=not-the-cluster-ca", NULL};
    int code = -1;
    cr_assert_eq(ut_exec(argv, NULL, 30000, NULL, NULL, &code), 0);
    cr_assert_eq(code, 0, "openssl could not make a CA");
    char e[1000];
    snprintf(e, sizeof(e), "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s", crt);
    outcome_t o = lookup_with((const char *[]){e, NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_TLS, "a TLS failure expected: %s", o.error);
    cr_expect(strstr(o.error, "could not be verified") && strstr(o.error, crt) &&
                  strstr(o.error, "wrong CA"),
              "says the CA is wrong and names the file: %s", o.error);

    snprintf(e, sizeof(e), "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s/absent.crt", em.dir);
    o = lookup_with((const char *[]){e, NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_CONFIG, "%s", o.error);
    cr_expect(strstr(o.error, "cannot read the CA file"), "%s", o.error);
}

Test(k8s_api, rotated_token_is_read_again, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    client_t c;
    client_new(&c, (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop", NULL});
    outcome_t o = lookup(&c);
    cr_assert_eq(o.status, 0, "first lookup: %s", o.error);
    /* The old token stops working and the file holds the new one. */
    ctl("rotate-token", NULL);
    o = lookup(&c);
    cr_expect_eq(o.status, 0, "after a rotation the new token must be used: %s", o.error);
    cr_expect_eq(o.n, 3);
    client_free(&c);
}

typedef struct rotate_later {
    ev_timer t;
    bool done;
} rotate_later_t;

static void do_rotate(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    /* Blocks the test's loop for the ctl's run: fine in a test, and the
     * request is already waiting inside the emulator. */
    ctl("rotate-token", NULL);
    ((rotate_later_t *)w->data)->done = true;
}

Test(k8s_api, token_rotated_mid_request_gets_401_then_one_retry, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    client_t c;
    client_new(&c, (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop",
                                    "UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=30s", NULL});
    /* The server holds the request 3 s before checking the token; the
     * token is rotated meanwhile, so the answer is 401 for the old one. */
    ctl("fault", "{\"path\": \"pods\", \"delay_ms\": 3000, \"count\": 1}");
    rotate_later_t r = {.done = false};
    ev_timer_init(&r.t, do_rotate, 1.0, 0.);
    r.t.data = &r;
    ev_timer_start(c.loop, &r.t);
    outcome_t o = lookup(&c);
    cr_expect(r.done, "the token should have been rotated during the request");
    cr_expect_eq(o.status, 0, "a 401 after a rotation is retried once with the new token: %s",
                 o.error);
    cr_expect_eq(o.n, 3);
    char *out = NULL;
    const char *args[] = {"requests", NULL};
    cr_assert_eq(ut_emulator_ctl(&em, args, &out), 0);
    cr_expect(out && strstr(out, "401"), "the emulator should have answered 401 once: %s",
              out ? out : "");
    free(out);
    client_free(&c);
}

typedef struct ticker {
    ev_timer t;
    int ticks;
} ticker_t;

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ((ticker_t *)w->data)->ticks++;
}

Test(k8s_api, slow_server_times_out_without_stalling_the_loop, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    client_t c;
    client_new(&c, (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=1s", NULL});
    ctl("fault", "{\"path\": \"pods\", \"delay_ms\": 5000, \"count\": 1}");
    ticker_t tk = {.ticks = 0};
    ev_timer_init(&tk.t, on_tick, 0.1, 0.1);
    tk.t.data = &tk;
    ev_timer_start(c.loop, &tk.t);
    outcome_t o = lookup(&c);
    ev_timer_stop(c.loop, &tk.t);
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_TIMEOUT, "a timeout expected: %s", o.error);
    cr_expect(strstr(o.error, "resolve-timeout (1s)"), "names the key and value: %s", o.error);
    cr_expect_geq(tk.ticks, 3, "other timers must keep firing while the request waits (%d)",
                  tk.ticks);
    client_free(&c);
}

Test(k8s_api, malformed_truncated_and_oversized_bodies_fail_cleanly, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    const char *shop[] = {"UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop", NULL};

    ctl("fault", "{\"path\": \"pods\", \"status\": 200, \"count\": 1, "
                 "\"body\": \"{\\\"kind\\\": \\\"PodList\\\", \\\"items\\\": [{\\\"metadata\\\": }]}\"}");
    outcome_t o = lookup_with(shop);
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_MALFORMED, "malformed expected: %s", o.error);
    cr_expect(strstr(o.error, "malformed JSON"), "%s", o.error);

    ctl("fault", "{\"path\": \"pods\", \"count\": 1, \"truncate_bytes\": 700}");
    o = lookup_with(shop);
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_MALFORMED, "a cut body expected: %s", o.error);

    o = lookup_with((const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop",
                                     "UKKO_DISCOVERY_KUBERNETES_API_MAX_RESPONSE_BYTES=4096",
                                     NULL});
    cr_expect_eq(o.failure, UKKO_DISCOVERY_FAIL_TOO_LARGE, "the cap must hold: %s", o.error);
    cr_expect(strstr(o.error, "max-response-bytes (4096 bytes)"), "%s", o.error);

    o = lookup_with(shop);
    cr_expect_eq(o.status, 0, "and then a good answer is taken: %s", o.error);
    cr_expect_eq(o.n, 3);
}

Test(k8s_api, ipv6_api_server_and_pod_ips, .timeout = 120)
{
    start(EMU_FIXTURES "ipv6-pods.json",
          (const char *[]){"--host", "::1", "--namespace", "ukko", NULL});
    /* As in an IPv6 pod: the address comes bare from the environment. */
    char port[16];
    snprintf(port, sizeof(port), "%d", em.port);
    setenv("KUBERNETES_SERVICE_HOST", "::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    client_t c;
    client_new(&c, NULL);
    /* client_new pointed api-server at 127.0.0.1: take it out again. */
    ukko_discovery_free(c.d);
    free(c.dc.k8s.api_server);
    c.dc.k8s.api_server = NULL;
    c.d = ukko_discovery_new(&c.dc, c.loop, 8558);
    cr_assert_not_null(c.d);
    outcome_t o = lookup(&c);
    cr_expect_eq(o.status, 0, "lookup over https://[::1]:port failed: %s", o.error);
    cr_expect_eq(o.n, 2);
    cr_expect_str_eq(o.first, "10.244.1.7:8558");
    cr_expect_str_eq(o.last, "[fd00:10:244:1::2a]:8558");
    client_free(&c);
}

Test(k8s_api, ten_thousand_pods, .timeout = 300)
{
    start(NULL, (const char *[]){"--generate-pods", "10000", NULL});
    outcome_t o = lookup_with((const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=60s",
                                               NULL});
    cr_assert_eq(o.status, 0, "%s", o.error);
    cr_expect_eq(o.n, 10000);
    cr_expect(o.all_default_port, "every generated pod names its management port 8558");
    cr_expect_str_eq(o.first, "10.1.0.1:8558");
}

typedef struct changed {
    int calls;
    size_t n;
} changed_t;

static void on_change(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    changed_t *ch = ud;
    ch->calls++;
    ch->n = res->points->n;
}

Test(k8s_api, refresh_retries_server_errors_with_backoff, .timeout = 120)
{
    start(OWN "shop-pods.json", shop_ns);
    client_t c;
    client_new(&c, (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_SERVICE_NAME=shop",
                                    "UKKO_DISCOVERY_BACKOFF_MIN=20ms",
                                    "UKKO_DISCOVERY_BACKOFF_MAX=200ms", NULL});
    ctl("fault", "{\"path\": \"pods\", \"status\": 503, \"count\": 3}");
    changed_t ch = {0};
    cr_assert_eq(ukko_discovery_start(c.d, 60000, on_change, &ch), 0);
    ev_tstamp deadline = ev_time() + 60;
    while (ch.calls == 0 && ev_time() < deadline)
        ev_run(c.loop, EVRUN_ONCE);
    cr_assert_eq(ch.calls, 1, "the refresh should succeed after the 503s");
    cr_expect_eq(ch.n, 3);
    ukko_buf_t m;
    ukko_buf_init(&m, 0);
    ukko_discovery_metrics(&m, c.d);
    cr_expect(strstr(m.data, "ukko_discovery_lookup_failures_total{reason=\"server\"} 3\n"),
              "three server failures counted:\n%s", m.data);
    cr_expect(strstr(m.data, "\nukko_discovery_lookups_total 4\n"), "four lookups:\n%s", m.data);
    ukko_buf_destroy(&m);
    client_free(&c);
}
