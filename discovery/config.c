/* config.c: the keys discovery.* and their checks. Used once at start, on
 * the main thread; the values then belong to the config (ukko_config_free).
 * Invariant: a value that passed its check here never makes a request URL or
 * a selector malformed later. */
#include "discovery_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In the order of ukko_discovery_method_t. */
static const char *const method_choices[] = {"kubernetes-api", "static", "auto", NULL};

/* A selector is URL-encoded later; here only the %s placeholder is checked,
 * so that snprintf never sees a directive it would read arguments for. */
static int check_selector(const cJSON *v, char *why, size_t whylen)
{
    if (!cJSON_IsString(v) || !*v->valuestring) {
        snprintf(why, whylen, "a label selector such as \"app=%%s\" or \"app=shop,tier=web\"");
        return UKKO_EINVAL;
    }
    int placeholders = 0;
    for (const char *p = v->valuestring; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == 's') {
            placeholders++;
            p++;
        } else {
            snprintf(why, whylen,
                     "a label selector with at most one %%s (the service name) and no other %%");
            return UKKO_EINVAL;
        }
    }
    if (placeholders > 1) {
        snprintf(why, whylen, "a label selector with at most one %%s (the service name)");
        return UKKO_EINVAL;
    }
    return 0;
}

static int check_nonempty(const cJSON *v, char *why, size_t whylen)
{
    if (cJSON_IsString(v) && !*v->valuestring) {
        snprintf(why, whylen, "a non-empty string, or null");
        return UKKO_EINVAL;
    }
    return 0;
}

static int check_api_server(const cJSON *v, char *why, size_t whylen)
{
    if (cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || strncmp(v->valuestring, "https://", 8) != 0 ||
        strlen(v->valuestring) < 9 || strlen(v->valuestring) > 512) {
        snprintf(why, whylen,
                 "null (use KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, as in a pod) "
                 "or an https:// URL such as \"https://127.0.0.1:6443\" (plain http is refused: "
                 "the token must not travel in clear)");
        return UKKO_EINVAL;
    }
    return 0;
}

static int check_static_points(const cJSON *v, char *why, size_t whylen)
{
    ukko_strlist_t l = {0};
    char *items[1024];
    for (const cJSON *it = v->child; it && l.n < 1024; it = it->next)
        items[l.n++] = it->valuestring;
    l.v = items;
    ukko_contact_points_t cps = {0};
    int rc = ukko_discovery_static_parse(&l, &cps, why, whylen);
    ukko_discovery_points_destroy(&cps);
    return rc;
}

#define SA "/var/run/secrets/kubernetes.io/serviceaccount/"
#define DC(f) offsetof(ukko_discovery_config_t, f)
static const ukko_cfg_key_t discovery_keys[] = {
    {"discovery.method", UKKO_CFG_ENUM, DC(method), "\"auto\"", 0, 0, method_choices, NULL,
     "kubernetes-api (list pods by label, in a pod), static (a fixed list, local runs) or auto: "
     "kubernetes-api when KUBERNETES_SERVICE_HOST or discovery.kubernetes-api.api-server is "
     "set, else static."},
    {"discovery.refresh-interval", UKKO_CFG_DURATION, DC(refresh_interval_ms), "\"5s\"", 100,
     3600000, NULL, NULL,
     "Time between lookups while discovery refreshes (bootstrap) without a watch."},
    {"discovery.backoff-min", UKKO_CFG_DURATION, DC(backoff_min_ms), "\"500ms\"", 10, 600000,
     NULL, NULL, "Delay before the first retry of a failed lookup; doubles on each failure."},
    {"discovery.backoff-max", UKKO_CFG_DURATION, DC(backoff_max_ms), "\"30s\"", 10, 3600000,
     NULL, NULL, "Cap of the retry delay (each delay is jittered by up to half)."},
    {"discovery.kubernetes-api.api-server", UKKO_CFG_STRING, DC(k8s.api_server), "null", 0, 0,
     NULL, check_api_server,
     "https:// URL of the API server; null: https://$KUBERNETES_SERVICE_HOST:"
     "$KUBERNETES_SERVICE_PORT as in a pod."},
    {"discovery.kubernetes-api.api-ca-path", UKKO_CFG_STRING, DC(k8s.api_ca_path),
     "\"" SA "ca.crt\"", 0, 0, NULL, check_nonempty,
     "CA bundle the API server's certificate is verified against."},
    {"discovery.kubernetes-api.api-token-path", UKKO_CFG_STRING, DC(k8s.api_token_path),
     "\"" SA "token\"", 0, 0, NULL, check_nonempty,
     "Bearer token file; re-read when it changes and after a 401 (tokens rotate)."},
    {"discovery.kubernetes-api.pod-namespace-path", UKKO_CFG_STRING, DC(k8s.pod_namespace_path),
     "\"" SA "namespace\"", 0, 0, NULL, check_nonempty,
     "File holding the namespace to list pods in, when pod-namespace is null."},
    {"discovery.kubernetes-api.pod-namespace", UKKO_CFG_STRING, DC(k8s.pod_namespace), "null", 0,
     0, NULL, check_nonempty, "Namespace to list pods in; null: read pod-namespace-path."},
    {"discovery.kubernetes-api.pod-label-selector", UKKO_CFG_STRING, DC(k8s.pod_label_selector),
     "\"app=%s\"", 0, 0, NULL, check_selector,
     "Label selector of the pods; %s is replaced by service-name."},
    {"discovery.kubernetes-api.service-name", UKKO_CFG_STRING, DC(k8s.service_name), "\"ukko\"",
     0, 0, NULL, check_nonempty, "The service's name, put into pod-label-selector."},
    {"discovery.kubernetes-api.pod-port-name", UKKO_CFG_STRING, DC(k8s.pod_port_name),
     "\"management\"", 0, 0, NULL, check_nonempty,
     "Name of the container port of the contact point; without one, management.port."},
    {"discovery.kubernetes-api.container-name", UKKO_CFG_STRING, DC(k8s.container_name), "null",
     0, 0, NULL, check_nonempty,
     "When set, a pod counts only while this container of it exists and is not waiting."},
    {"discovery.kubernetes-api.resolve-timeout", UKKO_CFG_DURATION, DC(k8s.resolve_timeout_ms),
     "\"3s\"", 100, 600000, NULL, NULL,
     "Whole-request timeout of one lookup, from connect to the last byte."},
    {"discovery.kubernetes-api.max-response-bytes", UKKO_CFG_INT, DC(k8s.max_response_bytes),
     "67108864", 4096, 1073741824, NULL, NULL,
     "Largest pod list accepted (bytes, after decompression); larger fails the lookup."},
    {"discovery.kubernetes-api.watch", UKKO_CFG_BOOL, DC(k8s.watch), "true", 0, 0, NULL, NULL,
     "While bootstrap runs, follow the pods with a watch=true stream (changes arrive at once) "
     "instead of a lookup every refresh-interval."},
    {"discovery.kubernetes-api.pod-name", UKKO_CFG_STRING, DC(k8s.pod_name), "null", 0, 0, NULL,
     check_nonempty,
     "This pod's name, to find the StatefulSet that owns it (its spec.replicas is the expected "
     "number of contact points); null: $HOSTNAME, which is the pod's name in a pod."},
    {"discovery.static.contact-points", UKKO_CFG_STRLIST, DC(static_.contact_points), "[]", 0,
     1024, NULL, check_static_points,
     "For method static: the contact points, \"host:port\" (IPv6 as \"[addr]:port\")."},
};
#undef DC
#undef SA

int ukko_discovery_method(const ukko_discovery_config_t *dc)
{
    if (dc->method != UKKO_DISCOVERY_AUTO)
        return dc->method;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    return (host && *host) || dc->k8s.api_server ? UKKO_DISCOVERY_KUBERNETES_API
                                                  : UKKO_DISCOVERY_STATIC;
}

int ukko_discovery_config_register(ukko_config_t *cfg, ukko_discovery_config_t *dc)
{
    return ukko_config_add(cfg, discovery_keys, sizeof(discovery_keys) / sizeof(discovery_keys[0]),
                           dc);
}
