/* otlp.c: the OTLP/HTTP exporter of spans and the "tracing" module: the
 * tracing.* settings and OTEL_* environment, a bounded lock-free queue that
 * span-ending threads push into (never blocking: full drops and counts), and
 * one background thread that batches spans into OTLP protobuf (otlp_proto.c)
 * or JSON and POSTs them with libcurl, retrying with backoff; flushed by a stop task. Threads: any thread
 * pushes; the exporter thread alone pops, owns the curl handle and logs
 * export errors; the loop thread starts, flushes and frees. */
#include "trace_internal.h"

#include <ctype.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>
#include <openssl/rand.h>

#define MAX_BODY (32u << 20)        /* one request's body */
#define ERROR_LOG_EVERY_MS 30000    /* one export error line per this */
#define MAX_ATTEMPTS 5

/* ------------------------------------------------------------- settings */

#define TC(f) offsetof(ukko_tracing_config_t, f)

static int check_sampler(const cJSON *v, char *why, size_t whylen)
{
    ukko__sampler_t s;
    if (cJSON_IsNull(v) || (cJSON_IsString(v) && ukko__sampler_parse(v->valuestring, &s) == 0))
        return 0;
    snprintf(why, whylen, "null, \"parentbased_traceidratio\", \"parentbased_always_on\", "
                          "\"parentbased_always_off\", \"traceidratio\", \"always_on\", "
                          "\"always_off\"");
    return UKKO_EINVAL;
}

static int parse_ratio(const char *s, double *out)
{
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || !(d >= 0.0 && d <= 1.0))
        return UKKO_EINVAL;
    *out = d;
    return 0;
}

static int check_ratio(const cJSON *v, char *why, size_t whylen)
{
    double d;
    if (cJSON_IsNull(v) || (cJSON_IsString(v) && parse_ratio(v->valuestring, &d) == 0))
        return 0;
    snprintf(why, whylen, "null or a number from 0 to 1 as a string (\"0.25\")");
    return UKKO_EINVAL;
}

/* 1: http/protobuf, 0: http/json, -1: another (grpc, a typo). */
static int parse_protocol(const char *s)
{
    return !strcmp(s, "http/protobuf") ? 1 : !strcmp(s, "http/json") ? 0 : -1;
}

static int check_protocol(const cJSON *v, char *why, size_t whylen)
{
    if (cJSON_IsNull(v) || (cJSON_IsString(v) && parse_protocol(v->valuestring) >= 0))
        return 0;
    snprintf(why, whylen, "null, \"http/protobuf\", \"http/json\" (OTLP/gRPC is not "
                          "supported: use the collector's OTLP/HTTP port, 4318)");
    return UKKO_EINVAL;
}

static const ukko_cfg_key_t tracing_keys[] = {
    {"tracing.endpoint", UKKO_CFG_STRING, TC(endpoint), "null", 0, 0, NULL, NULL,
     "OTLP/HTTP base URL of a collector (\"http://otel-collector:4318\"; spans go to its "
     "/v1/traces); null: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, "
     "and tracing stays off when none is set."},
    {"tracing.service-name", UKKO_CFG_STRING, TC(service_name), "null", 0, 0, NULL, NULL,
     "The resource's service.name; null: OTEL_SERVICE_NAME, else \"ukko\"."},
    {"tracing.resource-attributes", UKKO_CFG_STRING, TC(resource_attributes), "null", 0, 0, NULL,
     NULL, "More resource attributes, \"key=value,key=value\" (added to "
     "OTEL_RESOURCE_ATTRIBUTES, and winning over it)."},
    {"tracing.sampler", UKKO_CFG_STRING, TC(sampler), "null", 0, 0, NULL, check_sampler,
     "Which traces are recorded; null: OTEL_TRACES_SAMPLER, else parentbased_always_on."},
    {"tracing.sampler-arg", UKKO_CFG_STRING, TC(sampler_arg), "null", 0, 0, NULL, check_ratio,
     "The ratio of the traceidratio samplers, \"0\" to \"1\"; null: OTEL_TRACES_SAMPLER_ARG, "
     "else 1."},
    {"tracing.max-queue-size", UKKO_CFG_INT, TC(max_queue), "2048", 1, 1048576, NULL, NULL,
     "Ended spans waiting for export, at most; more are dropped and counted "
     "(ukko_trace_spans_dropped_total{reason=\"queue_full\"}), never waited for."},
    {"tracing.max-export-batch-size", UKKO_CFG_INT, TC(max_batch), "512", 1, 65536, NULL, NULL,
     "Spans per OTLP request."},
    {"tracing.schedule-delay", UKKO_CFG_DURATION, TC(schedule_delay_ms), "\"1s\"", 1, 600000,
     NULL, NULL, "Export what is queued at least this often (and at once when a batch is full)."},
    {"tracing.export-timeout", UKKO_CFG_DURATION, TC(export_timeout_ms), "\"10s\"", 10, 600000,
     NULL, NULL, "One export, retries included, gives up after this; its spans count as failed."},
    {"tracing.namespace-path", UKKO_CFG_STRING, TC(namespace_path),
     "\"/var/run/secrets/kubernetes.io/serviceaccount/namespace\"", 0, 0, NULL, NULL,
     "In a pod without POD_NAMESPACE, the file whose content is k8s.namespace.name."},
    {"tracing.protocol", UKKO_CFG_STRING, TC(protocol), "null", 0, 0, NULL, check_protocol,
     "The OTLP/HTTP encoding, \"http/protobuf\" or \"http/json\"; null: "
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."},
};

int ukko_tracing_config_register(ukko_config_t *cfg, ukko_tracing_config_t *tc)
{
    return ukko_config_add(cfg, tracing_keys, sizeof(tracing_keys) / sizeof(tracing_keys[0]), tc);
}

/* ------------------------------------------------------ resolved settings */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        ukko_log(UKKO_LOG_ERROR, "tracing", "out of memory");
        abort();
    }
    return d;
}

static void kv_add(ukko__otlp_plan_t *p, const char *key, const char *value)
{
    /* A key given again replaces the earlier value (later sources win). */
    for (size_t i = 0; i < p->nres; i++)
        if (!strcmp(p->res[i].key, key)) {
            free(p->res[i].value);
            p->res[i].value = xstrdup(value);
            return;
        }
    if (p->nres == UKKO__OTLP_MAX_RES)
        return;
    p->res[p->nres].key = xstrdup(key);
    p->res[p->nres].value = xstrdup(value);
    p->nres++;
}

static bool kv_has(const ukko__otlp_plan_t *p, const char *key)
{
    for (size_t i = 0; i < p->nres; i++)
        if (!strcmp(p->res[i].key, key))
            return true;
    return false;
}

static int unhex(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Percent-decodes [s, s+n) into out (NUL-terminated); W3C Baggage's octets. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n || unhex((unsigned char)s[i + 1]) < 0 ||
                unhex((unsigned char)s[i + 2]) < 0)
                return UKKO_EINVAL;
            c = unhex((unsigned char)s[i + 1]) << 4 | unhex((unsigned char)s[i + 2]);
            i += 2;
        }
        if (o + 1 >= outlen)
            return UKKO_E2BIG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static void trim(const char **a, const char **b)
{
    while (*a < *b && isspace((unsigned char)**a))
        (*a)++;
    while (*b > *a && isspace((unsigned char)(*b)[-1]))
        (*b)--;
}

int ukko__otlp_parse_kv(const char *list, ukko__otlp_kv_fn fn, void *ud)
{
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *ka = p, *kb = eq ? eq : end;
        trim(&ka, &kb);
        if (kb > ka || eq) {
            if (!eq || kb == ka)
                return UKKO_EINVAL;
            const char *va = eq + 1, *vb = end;
            trim(&va, &vb);
            char key[256], value[4096];
            if (pct_decode(ka, (size_t)(kb - ka), key, sizeof(key)) < 0 ||
                pct_decode(va, (size_t)(vb - va), value, sizeof(value)) < 0)
                return UKKO_EINVAL;
            fn(ud, key, value);
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

static void res_cb(void *ud, const char *key, const char *value)
{
    kv_add(ud, key, value);
}

static void header_cb(void *ud, const char *key, const char *value)
{
    ukko__otlp_plan_t *p = ud;
    char line[4400];
    snprintf(line, sizeof(line), "%s: %s", key, value);
    struct curl_slist *h = curl_slist_append(p->headers, line);
    if (h)
        p->headers = h;
}

static bool header_name_ok(const char *list)
{
    /* names are HTTP tokens; a value is never shown, only which one failed */
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *a = p, *b = eq ? eq : end;
        trim(&a, &b);
        for (const char *q = a; q < b; q++)
            if (!isalnum((unsigned char)*q) && !strchr("!#$%&'*+-.^_`|~", *q))
                return false;
        p = *end ? end + 1 : end;
    }
    return true;
}

static char *join_url(const char *base)
{
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    static const char suffix[] = "/v1/traces";
    if (n >= sizeof(suffix) - 1 && !memcmp(base + n - (sizeof(suffix) - 1), suffix,
                                            sizeof(suffix) - 1))
        return strndup(base, n);
    char *u = malloc(n + sizeof(suffix));
    if (u) {
        memcpy(u, base, n);
        memcpy(u + n, suffix, sizeof(suffix));
    }
    return u;
}

static void read_small_file(const char *path, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, outlen - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
}

void ukko__otlp_plan_destroy(ukko__otlp_plan_t *p)
{
    free(p->url);
    for (size_t i = 0; i < p->nres; i++) {
        free(p->res[i].key);
        free(p->res[i].value);
    }
    curl_slist_free_all(p->headers);
    memset(p, 0, sizeof(*p));
}

int ukko__otlp_plan(const ukko_tracing_config_t *tc, ukko__otlp_getenv_fn get,
                    ukko__otlp_plan_t *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    err[0] = '\0';
    const char *v;
    /* Off: OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none, unless the
     * ukko config names an endpoint itself. */
    const char *endpoint = tc->endpoint && *tc->endpoint ? tc->endpoint : NULL;
    bool disabled = ((v = get("OTEL_SDK_DISABLED")) && !strcasecmp(v, "true")) ||
                    ((v = get("OTEL_TRACES_EXPORTER")) && !strcasecmp(v, "none"));
    if (endpoint)
        p->url = join_url(endpoint);
    else if (disabled)
        return 0;
    else if ((v = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && *v)
        p->url = xstrdup(v);
    else if ((v = get("OTEL_EXPORTER_OTLP_ENDPOINT")) && *v)
        p->url = join_url(v);
    else
        return 0; /* not configured: tracing stays off */
    if (!p->url)
        return UKKO_ENOMEM;
    if (strncmp(p->url, "http://", 7) && strncmp(p->url, "https://", 8)) {
        snprintf(err, errlen, "tracing: the OTLP endpoint must start with http:// or https:// "
                              "(set tracing.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT to e.g. "
                              "http://otel-collector:4318)");
        return UKKO_EINVAL;
    }

    /* The encoding: the ukko config, else the signal's variable, else the
     * general one, else http/protobuf (the spec's default). */
    p->protobuf = true;
    if (tc->protocol) {
        p->protobuf = parse_protocol(tc->protocol) == 1; /* checked at load */
    } else {
        const char *pv = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
        v = get(pv);
        if (!v || !*v) {
            pv = "OTEL_EXPORTER_OTLP_PROTOCOL";
            v = get(pv);
        }
        if (v && *v) {
            int pr = parse_protocol(v);
            if (pr < 0) {
                snprintf(err, errlen,
                         "tracing: %s=%.40s is not a protocol ukko exports with%s (allowed: "
                         "http/protobuf, http/json; unset it or set tracing.protocol)",
                         pv, v,
                         !strcmp(v, "grpc") ? ": ukko speaks OTLP over HTTP only, so point the "
                                              "endpoint at the collector's OTLP/HTTP port "
                                              "(4318) and use http/protobuf"
                                            : "");
                return UKKO_EINVAL;
            }
            p->protobuf = pr == 1;
        }
    }

    /* Headers: secrets (API keys); only the variable's name is ever shown. */
    const char *hv = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    v = get(hv);
    if (!v || !*v) {
        hv = "OTEL_EXPORTER_OTLP_HEADERS";
        v = get(hv);
    }
    struct curl_slist *ct = curl_slist_append(NULL, p->protobuf
                                                        ? "Content-Type: application/x-protobuf"
                                                        : "Content-Type: application/json");
    if (!ct)
        return UKKO_ENOMEM;
    p->headers = ct;
    if (v && *v && (!header_name_ok(v) || ukko__otlp_parse_kv(v, header_cb, p) < 0)) {
        snprintf(err, errlen, "tracing: %s is not a list of name=value pairs with "
                              "percent-encoded values (its value is not shown: it may hold "
                              "secrets)", hv);
        return UKKO_EINVAL;
    }

    /* The sampler: the ukko config, else OTEL_TRACES_SAMPLER (an unknown
     * name there is warned about and the default used, as the spec says). */
    p->sampler = UKKO__SAMPLER_PARENT_ALWAYS_ON;
    p->ratio = 1.0;
    if (tc->sampler)
        (void)ukko__sampler_parse(tc->sampler, &p->sampler); /* checked at load */
    else if ((v = get("OTEL_TRACES_SAMPLER")) && *v &&
             ukko__sampler_parse(v, &p->sampler) < 0)
        ukko_log(UKKO_LOG_WARN, "tracing",
                 "OTEL_TRACES_SAMPLER=%s is not a sampler ukko knows; using "
                 "parentbased_always_on (allowed: parentbased_traceidratio, "
                 "parentbased_always_on, parentbased_always_off, traceidratio, always_on, "
                 "always_off)", v);
    if (tc->sampler_arg)
        (void)parse_ratio(tc->sampler_arg, &p->ratio);
    else if ((v = get("OTEL_TRACES_SAMPLER_ARG")) && *v && parse_ratio(v, &p->ratio) < 0) {
        ukko_log(UKKO_LOG_WARN, "tracing",
                 "OTEL_TRACES_SAMPLER_ARG=%s is not a ratio from 0 to 1; using 1", v);
        p->ratio = 1.0;
    }

    /* The resource: detected first, then OTEL_RESOURCE_ATTRIBUTES, then the
     * config, each winning over the one before. */
    kv_add(p, "service.name", "ukko");
    kv_add(p, "service.version", UKKO_VERSION);
    kv_add(p, "telemetry.sdk.name", "ukko");
    kv_add(p, "telemetry.sdk.version", UKKO_VERSION);
    const char *pod = get("POD_NAME");
    bool in_k8s = (pod && *pod) || get("KUBERNETES_SERVICE_HOST");
    if (in_k8s) {
        if (!pod || !*pod)
            pod = get("HOSTNAME");
        if (pod && *pod)
            kv_add(p, "k8s.pod.name", pod);
        char ns[256];
        const char *nsv = get("POD_NAMESPACE");
        if (nsv && *nsv)
            snprintf(ns, sizeof(ns), "%s", nsv);
        else
            read_small_file(tc->namespace_path && *tc->namespace_path
                                ? tc->namespace_path
                                : "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                            ns, sizeof(ns));
        if (ns[0])
            kv_add(p, "k8s.namespace.name", ns);
        if (ns[0] && pod && *pod) {
            char id[600];
            snprintf(id, sizeof(id), "%s.%s", ns, pod);
            kv_add(p, "service.instance.id", id);
        }
    }
    if (!kv_has(p, "service.instance.id")) {
        uint8_t u[16];
        if (RAND_bytes(u, sizeof(u)) != 1)
            memset(u, 0x5a, sizeof(u));
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* UUID version 4 */
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        char h[33], id[40];
        ukko__hex(u, 16, h);
        snprintf(id, sizeof(id), "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
        kv_add(p, "service.instance.id", id);
    }
    if ((v = get("OTEL_RESOURCE_ATTRIBUTES")) && *v && ukko__otlp_parse_kv(v, res_cb, p) < 0)
        ukko_log(UKKO_LOG_WARN, "tracing",
                 "OTEL_RESOURCE_ATTRIBUTES is not a list of key=value pairs with "
                 "percent-encoded values; what came before the bad pair is kept");
    if (tc->resource_attributes && ukko__otlp_parse_kv(tc->resource_attributes, res_cb, p) < 0) {
        snprintf(err, errlen, "tracing.resource-attributes is not a list of key=value pairs "
                              "(\"deployment.environment.name=prod,team=orders\")");
        return UKKO_EINVAL;
    }
    if ((v = get("OTEL_SERVICE_NAME")) && *v)
        kv_add(p, "service.name", v);
    if (tc->service_name && *tc->service_name)
        kv_add(p, "service.name", tc->service_name);
    return 0;
}

/* ------------------------------------------------------------ OTLP JSON */

size_t ukko__utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3/4-byte forms, surrogates, past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return len;
}

/* A JSON string, runs of plain bytes appended at once. Bytes that are not
 * UTF-8 become U+FFFD: one bad attribute must not make the collector refuse
 * the whole batch. */
static void json_str(ukko_buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    (void)ukko_buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        size_t u = c >= 0x80 ? ukko__utf8_len(p + i, n - i) : 0;
        if (u) {
            i += u;
            run += u;
            continue;
        }
        (void)ukko_buf_append(b, p + i - run, run);
        run = 0;
        char esc[8];
        switch (c) {
        case '"': (void)ukko_buf_append(b, "\\\"", 2); break;
        case '\\': (void)ukko_buf_append(b, "\\\\", 2); break;
        case '\n': (void)ukko_buf_append(b, "\\n", 2); break;
        case '\r': (void)ukko_buf_append(b, "\\r", 2); break;
        case '\t': (void)ukko_buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                (void)ukko_buf_append(b, esc, 6);
            } else {
                (void)ukko_buf_append(b, "\\ufffd", 6);
            }
        }
        i++;
    }
    (void)ukko_buf_append(b, p + n - run, run);
    (void)ukko_buf_append(b, "\"", 1);
}

/* Decimal digits of v, quoted (proto3 JSON writes 64-bit integers as strings). */
static void json_u64(ukko_buf_t *b, uint64_t v)
{
    char d[24];
    int i = (int)sizeof(d);
    d[--i] = '"';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    d[--i] = '"';
    (void)ukko_buf_append(b, d + i, sizeof(d) - (size_t)i);
}

static void json_attr_value(ukko_buf_t *b, const ukko_span_t *sp, const ukko__attr_t *a)
{
    switch (a->type) {
    case UKKO__ATTR_STR:
        (void)ukko_buf_puts(b, "{\"stringValue\":");
        json_str(b, ukko__span_text(sp, a->v.s));
        break;
    case UKKO__ATTR_INT:
        if (a->v.i >= 0) {
            (void)ukko_buf_puts(b, "{\"intValue\":");
            json_u64(b, (uint64_t)a->v.i);
        } else {
            (void)ukko_buf_printf(b, "{\"intValue\":\"%lld\"", (long long)a->v.i);
        }
        break;
    case UKKO__ATTR_DOUBLE:
        if (isnan(a->v.d))
            (void)ukko_buf_puts(b, "{\"doubleValue\":\"NaN\"");
        else if (isinf(a->v.d))
            (void)ukko_buf_puts(b, a->v.d > 0 ? "{\"doubleValue\":\"Infinity\""
                                              : "{\"doubleValue\":\"-Infinity\"");
        else
            (void)ukko_buf_printf(b, "{\"doubleValue\":%.17g", a->v.d);
        break;
    default:
        (void)ukko_buf_puts(b, a->v.b ? "{\"boolValue\":true" : "{\"boolValue\":false");
    }
    (void)ukko_buf_append(b, "}", 1);
}

static void json_attrs(ukko_buf_t *b, const ukko_span_t *sp, int event)
{
    (void)ukko_buf_puts(b, "\"attributes\":[");
    bool first = true;
    for (int i = 0; i < sp->nattrs; i++) {
        const ukko__attr_t *a = &sp->attrs[i];
        if (a->event != event)
            continue;
        (void)ukko_buf_puts(b, first ? "{\"key\":" : ",{\"key\":");
        first = false;
        json_str(b, ukko__span_text(sp, a->key));
        (void)ukko_buf_puts(b, ",\"value\":");
        json_attr_value(b, sp, a);
        (void)ukko_buf_puts(b, "}");
    }
    (void)ukko_buf_puts(b, "]");
}

static void json_span(ukko_buf_t *b, const ukko_span_t *sp)
{
    char ids[128];
    memcpy(ids, "{\"traceId\":\"", 12);
    ukko__hex(sp->ctx.trace_id, 16, ids + 12);
    memcpy(ids + 44, "\",\"spanId\":\"", 12);
    ukko__hex(sp->ctx.span_id, 8, ids + 56);
    size_t n = 72;
    if (sp->has_parent) {
        memcpy(ids + n, "\",\"parentSpanId\":\"", 18);
        ukko__hex(sp->parent_id, 8, ids + n + 18);
        n += 34;
    }
    memcpy(ids + n, "\",\"name\":", 9);
    (void)ukko_buf_append(b, ids, n + 9);
    json_str(b, ukko__span_text(sp, sp->name));
    char kind[40];
    snprintf(kind, sizeof(kind), ",\"kind\":%d,\"flags\":%u,", sp->kind,
             (unsigned)sp->ctx.flags); /* W3C flags; "has-is-remote" (bit 8) unset */
    (void)ukko_buf_puts(b, kind);
    (void)ukko_buf_puts(b, "\"startTimeUnixNano\":");
    json_u64(b, sp->start_ns);
    (void)ukko_buf_puts(b, ",\"endTimeUnixNano\":");
    json_u64(b, sp->end_ns);
    (void)ukko_buf_append(b, ",", 1);
    json_attrs(b, sp, -1);
    if (sp->dropped_attrs)
        (void)ukko_buf_printf(b, ",\"droppedAttributesCount\":%u", sp->dropped_attrs);
    if (sp->nevents) {
        (void)ukko_buf_puts(b, ",\"events\":[");
        for (int e = 0; e < sp->nevents; e++) {
            (void)ukko_buf_puts(b, e ? ",{\"timeUnixNano\":" : "{\"timeUnixNano\":");
            json_u64(b, sp->events[e].time_ns);
            (void)ukko_buf_puts(b, ",\"name\":");
            json_str(b, ukko__span_text(sp, sp->events[e].name));
            (void)ukko_buf_append(b, ",", 1);
            json_attrs(b, sp, e);
            (void)ukko_buf_append(b, "}", 1);
        }
        (void)ukko_buf_append(b, "]", 1);
    }
    if (sp->dropped_events)
        (void)ukko_buf_printf(b, ",\"droppedEventsCount\":%u", sp->dropped_events);
    if (sp->status) {
        (void)ukko_buf_printf(b, ",\"status\":{\"code\":%d", sp->status);
        if (sp->status_msg != UKKO__SPAN_NONE) {
            (void)ukko_buf_puts(b, ",\"message\":");
            json_str(b, ukko__span_text(sp, sp->status_msg));
        }
        (void)ukko_buf_append(b, "}", 1);
    }
    (void)ukko_buf_append(b, "}", 1);
}

int ukko__otlp_json(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans,
                    size_t n)
{
    (void)ukko_buf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    for (size_t i = 0; i < p->nres; i++) {
        (void)ukko_buf_puts(b, i ? ",{\"key\":" : "{\"key\":");
        json_str(b, p->res[i].key);
        (void)ukko_buf_puts(b, ",\"value\":{\"stringValue\":");
        json_str(b, p->res[i].value);
        (void)ukko_buf_puts(b, "}}");
    }
    (void)ukko_buf_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"ukko\",\"version\":\"" UKKO_VERSION
                           "\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            (void)ukko_buf_puts(b, ",");
        json_span(b, spans[i]);
    }
    /* The last append tells whether the cap was hit anywhere before: a
     * failed append leaves the buffer as it was, so the closing brackets
     * would then be missing too. */
    return ukko_buf_puts(b, "]}]}]}");
}

/* ------------------------------------------------------------ the exporter */

typedef struct cell {
    _Atomic size_t seq;
    ukko_span_t *sp;
} cell_t;

struct ukko__otlp {
    ukko__otlp_plan_t plan;
    size_t mask;
    cell_t *cells;
    int64_t batch, delay_ms, timeout_ms;
    int efd;
    pthread_t thread;
    bool thread_started;
    _Alignas(64) _Atomic size_t enq; /* producers' ticket (Vyukov's bounded queue) */
    _Alignas(64) size_t deq;         /* the exporter thread's alone */
    _Alignas(64) _Atomic int64_t pending; /* queued, for the batch wake-up */
    _Atomic uint64_t exported, dropped, failed, requests;
    _Atomic bool stop;
    _Atomic int64_t flush_deadline; /* ukko_now_ms until which a flush may run; 0 none */
    /* loop side of the flush */
    struct ev_loop *loop;
    ev_async flushed;
    ukko_stop_task_t *task;
    /* exporter thread */
    CURL *curl;
    ukko_buf_t body;
    int64_t last_err_log_ms;
    uint64_t errors_unlogged;
};

/* One exporter per process: the sink of trace.c is a plain function. */
static ukko__otlp_t *_Atomic g_exp;

static void wake(ukko__otlp_t *x)
{
    uint64_t one = 1;
    (void)!write(x->efd, &one, sizeof(one));
}

bool ukko__otlp_push(ukko__otlp_t *x, ukko_span_t *sp)
{
    size_t pos = atomic_load_explicit(&x->enq, memory_order_relaxed);
    cell_t *c;
    for (;;) {
        c = &x->cells[pos & x->mask];
        /* Pairs with the release store of seq by the consumer (cell free). */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&x->enq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            atomic_fetch_add_explicit(&x->dropped, 1, memory_order_relaxed);
            ukko_metrics_spans_add(UKKO_SPANS_DROPPED_QUEUE, 1);
            ukko__span_free(sp);
            /* Until the exporter catches up, new spans are not even
             * recorded: a dead collector costs the hot path next to nothing. */
            ukko__trace_set_backlog(true);
            return false; /* full */
        } else {
            pos = atomic_load_explicit(&x->enq, memory_order_relaxed);
        }
    }
    c->sp = sp;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release); /* pairs with pop's acquire */
    /* relaxed: only a hint for when to wake the exporter early */
    if (atomic_fetch_add_explicit(&x->pending, 1, memory_order_relaxed) + 1 == x->batch)
        wake(x);
    return true;
}

static ukko_span_t *pop(ukko__otlp_t *x)
{
    cell_t *c = &x->cells[x->deq & x->mask];
    /* Pairs with the release store in ukko__otlp_push. */
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != x->deq + 1)
        return NULL;
    ukko_span_t *sp = c->sp;
    /* Pairs with the acquire load in push: the cell is free for the next lap. */
    atomic_store_explicit(&c->seq, x->deq + x->mask + 1, memory_order_release);
    x->deq++;
    int64_t left = atomic_fetch_sub_explicit(&x->pending, 1, memory_order_relaxed) - 1;
    if (left <= (int64_t)(x->mask / 2))
        ukko__trace_set_backlog(false);
    return sp;
}

static void sink(ukko_span_t *sp)
{
    ukko__otlp_t *x = atomic_load_explicit(&g_exp, memory_order_acquire); /* pairs with start */
    if (x)
        (void)ukko__otlp_push(x, sp);
    else
        ukko__span_free(sp);
}

/* A stop does not wait for a slow collector: the request in flight ends. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    ukko__otlp_t *x = ud;
    if (atomic_load_explicit(&x->stop, memory_order_relaxed))
        return 1;
    /* A flush has a deadline (its stop phase's): a request begun before it
     * does not outlive it. */
    int64_t fd = atomic_load_explicit(&x->flush_deadline, memory_order_relaxed);
    return fd && ukko_now_ms() > fd ? 1 : 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* The URL for a log line: scheme, host and path only (no user:password@). */
static void safe_url(const char *url, char *out, size_t outlen)
{
    const char *s = strstr(url, "://");
    const char *host = s ? s + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    if (at && (!slash || at < slash))
        host = at + 1;
    snprintf(out, outlen, "%.*s%s", s ? (int)(s + 3 - url) : 0, url, host);
    char *q = strchr(out, '?');
    if (q)
        *q = '\0';
}

static void export_error(ukko__otlp_t *x, size_t n, const char *why)
{
    int64_t now = ukko_now_ms();
    if (x->last_err_log_ms && now - x->last_err_log_ms < ERROR_LOG_EVERY_MS) {
        x->errors_unlogged++;
        return;
    }
    char url[512];
    safe_url(x->plan.url, url, sizeof(url));
    ukko_logf(UKKO_LOG_WARN, "tracing",
              UKKO_FIELDS(UKKO_FS("endpoint", url), UKKO_FI("spans", n),
                          UKKO_FI("failures_not_logged", x->errors_unlogged)),
              "exporting %zu spans to %s failed: %s; spans are dropped and counted "
              "(ukko_trace_spans_dropped_total{reason=\"export_failed\"}) while it lasts, "
              "processing goes on; check tracing.endpoint / OTEL_EXPORTER_OTLP_ENDPOINT and "
              "that the collector listens for OTLP/HTTP there",
              n, url, why);
    x->last_err_log_ms = now;
    x->errors_unlogged = 0;
}

/* Sleeps up to ms unless stopped (or, with flushing, woken). */
static void nap(ukko__otlp_t *x, int64_t ms)
{
    struct pollfd pfd = {.fd = x->efd, .events = POLLIN};
    if (ms > 0 && poll(&pfd, 1, (int)ms) > 0) {
        uint64_t v;
        (void)!read(x->efd, &v, sizeof(v));
    }
}

/* Sends one batch; retries 429, 502, 503, 504 and transport errors with
 * backoff until the export timeout (or the flush's deadline). */
static void send_batch(ukko__otlp_t *x, ukko_span_t **spans, size_t n)
{
    ukko_buf_reset(&x->body);
    size_t start = 0;
    if ((x->plan.protobuf ? ukko__otlp_proto(&x->body, &x->plan, spans, n, &start)
                          : ukko__otlp_json(&x->body, &x->plan, spans, n)) < 0) {
        atomic_fetch_add_explicit(&x->failed, n, memory_order_relaxed);
        ukko_metrics_spans_add(UKKO_SPANS_DROPPED_EXPORT, n);
        export_error(x, n, "the batch's body is over 32 MiB (lower tracing.max-export-batch-size)");
        return;
    }
    int64_t t0 = ukko_now_ms(), deadline = t0 + x->timeout_ms;
    int64_t fd = atomic_load_explicit(&x->flush_deadline, memory_order_relaxed);
    if (fd && fd < deadline)
        deadline = fd;
    int64_t backoff = 100;
    char why[300] = "";
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int64_t left = deadline - ukko_now_ms();
        if (left <= 0)
            break;
        curl_easy_setopt(x->curl, CURLOPT_POSTFIELDS, x->body.data + start);
        curl_easy_setopt(x->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(x->body.len - start));
        curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(left < 3000 ? left : 3000));
        atomic_fetch_add_explicit(&x->requests, 1, memory_order_relaxed);
        CURLcode cc = curl_easy_perform(x->curl);
        long status = 0;
        bool retry;
        if (cc == CURLE_OK) {
            curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status < 300) {
                atomic_fetch_add_explicit(&x->exported, n, memory_order_relaxed);
                ukko_metrics_spans_add(UKKO_SPANS_EXPORTED, n);
                return;
            }
            retry = status == 429 || status == 502 || status == 503 || status == 504;
            snprintf(why, sizeof(why), "HTTP %ld%s", status,
                     status == 404 ? " (is the path /v1/traces of an OTLP/HTTP receiver?)"
                     : status == 401 || status == 403
                         ? " (check OTEL_EXPORTER_OTLP_HEADERS: the collector wants credentials)"
                         : "");
        } else {
            retry = true;
            snprintf(why, sizeof(why), "%s", curl_easy_strerror(cc));
        }
        if (!retry || atomic_load_explicit(&x->stop, memory_order_relaxed))
            break;
        if (ukko_now_ms() + backoff >= deadline)
            break;
        nap(x, backoff);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    atomic_fetch_add_explicit(&x->failed, n, memory_order_relaxed);
    ukko_metrics_spans_add(UKKO_SPANS_DROPPED_EXPORT, n);
    export_error(x, n, why[0] ? why : "the export timeout passed");
}

/* Exports what is queued now, batch by batch; returns the spans sent. */
static size_t drain(ukko__otlp_t *x)
{
    size_t total = 0;
    ukko_span_t **batch = malloc((size_t)x->batch * sizeof(*batch));
    if (!batch)
        return 0;
    for (;;) {
        size_t n = 0;
        ukko_span_t *sp;
        while (n < (size_t)x->batch && (sp = pop(x)))
            batch[n++] = sp;
        if (!n)
            break;
        send_batch(x, batch, n);
        for (size_t i = 0; i < n; i++)
            ukko__span_free(batch[i]);
        total += n;
        if (n < (size_t)x->batch)
            break;
        if (atomic_load_explicit(&x->stop, memory_order_relaxed))
            break;
    }
    free(batch);
    return total;
}

static void *run(void *arg)
{
    ukko__otlp_t *x = arg;
    while (!atomic_load_explicit(&x->stop, memory_order_acquire)) { /* pairs with stop's store */
        nap(x, x->delay_ms);
        (void)drain(x);
        /* pop clears the backlog mark, but a pusher that found the queue
         * full may set it just after the last pop: with nothing recorded
         * nothing would be popped again, so clear it here too. */
        if (atomic_load_explicit(&x->pending, memory_order_relaxed) <= (int64_t)(x->mask / 2))
            ukko__trace_set_backlog(false);
        int64_t fd = atomic_load_explicit(&x->flush_deadline, memory_order_acquire);
        if (fd) {
            /* A flush: everything queued until now, then tell the loop. */
            while (atomic_load_explicit(&x->pending, memory_order_relaxed) > 0 &&
                   ukko_now_ms() < fd && drain(x) > 0)
                ;
            atomic_store_explicit(&x->flush_deadline, 0, memory_order_relaxed);
            ev_async_send(x->loop, &x->flushed);
        }
    }
    return NULL;
}

static void on_flushed(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko__otlp_t *x = w->data;
    if (x->task) {
        ukko_stop_task_t *t = x->task;
        x->task = NULL;
        ukko_stop_task_done(t);
    }
}

static void flush_task(ukko_stop_task_t *task, void *ud)
{
    ukko__otlp_t *x = ud;
    int64_t left = ukko_stop_task_remaining_ms(task);
    x->task = task;
    /* Leave a little of the phase for the rest of the stop. */
    int64_t until = ukko_now_ms() + (left > 200 ? left - 100 : left / 2);
    atomic_store_explicit(&x->flush_deadline, until, memory_order_release); /* pairs with run */
    wake(x);
}

static size_t pow2(int64_t n)
{
    size_t p = 2;
    while ((int64_t)p < n)
        p <<= 1;
    return p;
}

int ukko__otlp_new(ukko__otlp_plan_t *plan, const ukko_tracing_config_t *tc, struct ev_loop *loop,
                   ukko__otlp_t **out)
{
    ukko__otlp_t *x = calloc(1, sizeof(*x));
    if (!x)
        return UKKO_ENOMEM;
    x->plan = *plan; /* taken over */
    memset(plan, 0, sizeof(*plan));
    size_t cap = pow2(tc->max_queue);
    x->mask = cap - 1;
    x->cells = calloc(cap, sizeof(*x->cells));
    x->batch = tc->max_batch;
    x->delay_ms = tc->schedule_delay_ms;
    x->timeout_ms = tc->export_timeout_ms;
    x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    x->curl = curl_easy_init();
    x->loop = loop;
    ukko_buf_init(&x->body, MAX_BODY);
    if (!x->cells || x->efd < 0 || !x->curl) {
        ukko__otlp_free(x);
        return UKKO_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++)
        atomic_init(&x->cells[i].seq, i);
    /* The ring is max_queue rounded up to a power of two (documented). */
    curl_easy_setopt(x->curl, CURLOPT_URL, x->plan.url);
    curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, x->plan.headers);
    curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(x->curl, CURLOPT_USERAGENT, "ukko/" UKKO_VERSION);
    curl_easy_setopt(x->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(x->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(x->curl, CURLOPT_XFERINFODATA, x);
    if (loop) {
        ev_async_init(&x->flushed, on_flushed);
        x->flushed.data = x;
        ev_async_start(loop, &x->flushed);
        ev_unref(loop); /* the flush watcher alone does not keep the loop running */
    }
    if (pthread_create(&x->thread, NULL, run, x) != 0) {
        ukko__otlp_free(x);
        return UKKO_ENOMEM;
    }
    x->thread_started = true;
    *out = x;
    return 0;
}

void ukko__otlp_stop(ukko__otlp_t *x)
{
    if (!x || !x->thread_started)
        return;
    atomic_store_explicit(&x->stop, true, memory_order_release); /* pairs with run */
    wake(x);
    pthread_join(x->thread, NULL);
    x->thread_started = false;
}

void ukko__otlp_free(ukko__otlp_t *x)
{
    if (!x)
        return;
    ukko__otlp_stop(x);
    if (atomic_load_explicit(&g_exp, memory_order_relaxed) == x) {
        ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);
        atomic_store_explicit(&g_exp, NULL, memory_order_release);
    }
    if (x->loop && ev_is_active(&x->flushed)) {
        ev_ref(x->loop);
        ev_async_stop(x->loop, &x->flushed);
    }
    ukko_span_t *sp;
    while (x->cells && (sp = pop(x))) { /* left at the end: dropped, counted */
        atomic_fetch_add_explicit(&x->dropped, 1, memory_order_relaxed);
        ukko_metrics_spans_add(UKKO_SPANS_DROPPED_QUEUE, 1);
        ukko__span_free(sp);
    }
    if (x->curl)
        curl_easy_cleanup(x->curl);
    if (x->efd >= 0)
        close(x->efd);
    ukko_buf_destroy(&x->body);
    free(x->cells);
    ukko__otlp_plan_destroy(&x->plan);
    free(x);
}

void ukko__otlp_install(ukko__otlp_t *x)
{
    atomic_store_explicit(&g_exp, x, memory_order_release); /* pairs with sink */
    ukko__trace_configure(x->plan.sampler, x->plan.ratio, sink);
}

void ukko__otlp_counts(const ukko__otlp_t *x, ukko__otlp_counts_t *c)
{
    c->exported = atomic_load_explicit(&x->exported, memory_order_relaxed);
    c->dropped = atomic_load_explicit(&x->dropped, memory_order_relaxed) +
                 ukko__trace_backlog_dropped();
    c->failed = atomic_load_explicit(&x->failed, memory_order_relaxed);
    c->requests = atomic_load_explicit(&x->requests, memory_order_relaxed);
    int64_t q = atomic_load_explicit(&x->pending, memory_order_relaxed);
    c->queued = q > 0 ? (uint64_t)q : 0;
}

/* -------------------------------------------------------------- the module */

static int register_config(ukko_config_t *cfg, void *settings)
{
    return ukko_tracing_config_register(cfg, settings);
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static int start(ukko_host_t *host, void *settings, void **state)
{
    ukko_tracing_config_t *tc = settings;
    ukko__otlp_plan_t plan;
    char err[400];
    int rc = ukko__otlp_plan(tc, env_get, &plan, err, sizeof(err));
    if (rc < 0) {
        if (err[0])
            ukko_log(UKKO_LOG_ERROR, "tracing", "%s", err);
        ukko__otlp_plan_destroy(&plan);
        return rc;
    }
    if (!plan.url) {
        ukko_log(UKKO_LOG_DEBUG, "tracing",
                 "off: no OTLP endpoint (set tracing.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)");
        return 0;
    }
    ukko_node_t *node = ukko_host_node(host);
    ukko__otlp_t *x = NULL;
    rc = ukko__otlp_new(&plan, tc, ukko_node_loop(node), &x);
    if (rc < 0) {
        ukko__otlp_plan_destroy(&plan);
        ukko_log(UKKO_LOG_ERROR, "tracing", "the OTLP exporter could not start: %s",
                 ukko_strerror(rc));
        return rc;
    }
    char url[512];
    safe_url(x->plan.url, url, sizeof(url));
    ukko_logf(UKKO_LOG_INFO, "tracing",
              UKKO_FIELDS(UKKO_FS("endpoint", url),
                          UKKO_FS("protocol", x->plan.protobuf ? "http/protobuf" : "http/json"),
                          UKKO_FS("sampler", ukko__sampler_name(x->plan.sampler)),
                          UKKO_FF("ratio", x->plan.ratio)),
              "spans go to %s as OTLP/HTTP %s (sampler %s, ratio %g)", url,
              x->plan.protobuf ? "protobuf" : "JSON", ukko__sampler_name(x->plan.sampler),
              x->plan.ratio);
    ukko__otlp_install(x);
    (void)ukko_node_add_stop_task(node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "tracing-flush",
                                  flush_task, x);
    *state = x;
    return 0;
}

/* The span counts are node/metrics.c's (ukko_trace_spans_exported_total,
 * ukko_trace_spans_dropped_total{reason}), present while tracing is off too;
 * the queue's depth only while an exporter runs. */
static void metrics(ukko_buf_t *out, void *ud)
{
    ukko__otlp_counts_t c;
    ukko__otlp_counts(ud, &c);
    ukko_prom_family(out, "ukko_trace_export_queue_spans", "gauge",
                     "Ended spans waiting for export (at most tracing.max-queue-size).");
    ukko_prom_sample(out, "ukko_trace_export_queue_spans", NULL, NULL, 0, (double)c.queued);
}

static void free_state(void *state)
{
    ukko__otlp_free(state);
}

const ukko_module_t ukko_tracing_module = {
    .name = "tracing",
    .settings_size = sizeof(ukko_tracing_config_t),
    .register_config = register_config,
    .start = start,
    .metrics = metrics,
    .free = free_state,
};
