/* test_config.c: the keys discovery.* (discovery/config.c): defaults as
 * documented, overrides from file and environment, and refusals that name
 * the key and what is allowed. */
#include "discovery.h"
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loaded {
    ukko_config_t *cfg;
    ukko_discovery_config_t dc;
    int problems;
} loaded_t;

static void load(loaded_t *l, const char *json, char *const *env)
{
    memset(l, 0, sizeof(*l));
    l->cfg = ukko_config_new();
    cr_assert_eq(ukko_discovery_config_register(l->cfg, &l->dc), 0);
    char *dir = NULL, path[512] = "";
    if (json) {
        dir = ut_tempdir();
        snprintf(path, sizeof(path), "%s/ukko.json", dir);
        cr_assert_eq(ut_write_file(path, json), 0);
    }
    l->problems = ukko_config_load(l->cfg, json ? path : NULL, env);
    ut_rmtree(dir);
    free(dir);
}

static bool has_error(const loaded_t *l, const char *a, const char *b)
{
    for (size_t i = 0; i < ukko_config_error_count(l->cfg); i++) {
        const char *e = ukko_config_error(l->cfg, i);
        if (strstr(e, a) && (!b || strstr(e, b)))
            return true;
    }
    return false;
}

Test(config, defaults_are_the_service_account_paths, .timeout = 10)
{
    loaded_t l;
    load(&l, NULL, NULL);
    cr_assert_eq(l.problems, 0, "defaults must load: %s", ukko_config_error(l.cfg, 0));
    cr_expect_eq(l.dc.method, UKKO_DISCOVERY_AUTO, "auto: the API in a pod, else static");
    cr_expect(l.dc.k8s.watch, "bootstrap watches the pods by default");
    cr_expect_null(l.dc.k8s.pod_name, "the pod's name comes from HOSTNAME by default");
    cr_expect_str_eq(l.dc.k8s.api_ca_path, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
    cr_expect_str_eq(l.dc.k8s.api_token_path, "/var/run/secrets/kubernetes.io/serviceaccount/token");
    cr_expect_str_eq(l.dc.k8s.pod_namespace_path,
                     "/var/run/secrets/kubernetes.io/serviceaccount/namespace");
    cr_expect_null(l.dc.k8s.pod_namespace);
    cr_expect_null(l.dc.k8s.api_server);
    cr_expect_null(l.dc.k8s.container_name);
    cr_expect_str_eq(l.dc.k8s.pod_label_selector, "app=%s");
    cr_expect_str_eq(l.dc.k8s.pod_port_name, "management");
    cr_expect_eq(l.dc.k8s.resolve_timeout_ms, 3000);
    cr_expect_eq(l.dc.k8s.max_response_bytes, 64 << 20);
    cr_expect_eq(l.dc.static_.contact_points.n, 0);
    ukko_config_free(l.cfg);
}

Test(config, file_and_environment_override, .timeout = 10)
{
    char *env[] = {"UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=750ms",
                   "UKKO_DISCOVERY_STATIC_CONTACT_POINTS=127.0.0.70:8558, [::1]:8559", NULL};
    loaded_t l;
    load(&l,
         "{\"discovery\": {\"method\": \"static\", \"kubernetes-api\": {\"pod-port-name\": null,"
         " \"pod-namespace\": \"shop\", \"api-server\": \"https://[::1]:6443/\"}}}",
         env);
    cr_assert_eq(l.problems, 0, "%s", ukko_config_error(l.cfg, 0));
    cr_expect_eq(l.dc.method, UKKO_DISCOVERY_STATIC);
    cr_expect_null(l.dc.k8s.pod_port_name, "null turns the port name off");
    cr_expect_str_eq(l.dc.k8s.pod_namespace, "shop");
    cr_expect_eq(l.dc.k8s.resolve_timeout_ms, 750);
    cr_assert_eq(l.dc.static_.contact_points.n, 2);
    cr_expect_str_eq(l.dc.static_.contact_points.v[1], "[::1]:8559");
    ukko_config_free(l.cfg);
}

Test(config, bad_values_are_refused_with_the_way_out, .timeout = 10)
{
    loaded_t l;
    load(&l,
         "{\"discovery\": {\"method\": \"dns\", \"kubernetes-api\": {"
         "\"api-server\": \"http://10.0.0.1\", \"pod-label-selector\": \"app=%s,x=%d\","
         "\"resolve-timeout\": \"0ms\", \"service-name\": \"\"},"
         "\"static\": {\"contact-points\": [\"10.0.0.1\"]}}}",
         NULL);
    cr_expect_eq(l.problems, 6, "six problems expected, got %d", l.problems);
    cr_expect(has_error(&l, "discovery.method", "kubernetes-api"), "method: allowed choices");
    cr_expect(has_error(&l, "discovery.kubernetes-api.api-server", "plain http is refused"),
              "api-server must be https");
    cr_expect(has_error(&l, "pod-label-selector", "%s"), "selector placeholders");
    cr_expect(has_error(&l, "resolve-timeout", "out of range"), "timeout range");
    cr_expect(has_error(&l, "service-name", "non-empty"), "empty service name");
    cr_expect(has_error(&l, "discovery.static.contact-points", "\"10.0.0.1\""),
              "the bad static item is quoted");
    ukko_config_free(l.cfg);
}
