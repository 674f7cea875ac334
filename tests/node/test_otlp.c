/* Tests node/otlp.c: the settings and OTEL_* variables resolve as the
 * OpenTelemetry spec says (endpoint paths, headers kept secret, resource
 * attributes with Kubernetes' from the pod), the OTLP JSON is what the
 * protocol's JSON mapping wants, and an exporter whose collector is down
 * never blocks: spans are dropped and counted. */
#include "trace_internal.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const *fake_env;

static const char *get(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *e = fake_env; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static ukko_tracing_config_t defaults(void)
{
    return (ukko_tracing_config_t){.max_queue = 2048, .max_batch = 512,
                                   .schedule_delay_ms = 1000, .export_timeout_ms = 10000};
}

static const char *res(const ukko__otlp_plan_t *p, const char *key)
{
    for (size_t i = 0; i < p->nres; i++)
        if (!strcmp(p->res[i].key, key))
            return p->res[i].value;
    return NULL;
}

TestSuite(otlp, .timeout = 30);

Test(otlp, off_unless_an_endpoint_is_set)
{
    static const char *env[] = {"OTEL_SERVICE_NAME=x", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_null(p.url, "no endpoint: tracing stays off");
    ukko__otlp_plan_destroy(&p);
}

Test(otlp, endpoints_as_the_spec_says)
{
    ukko_tracing_config_t tc = defaults();
    ukko__otlp_plan_t p;
    char err[400];
    static const char *base[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318/", NULL};
    fake_env = base;
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_str_eq(p.url, "http://c:4318/v1/traces");
    ukko__otlp_plan_destroy(&p);

    static const char *traces[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://t:9/custom", NULL};
    fake_env = traces;
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_str_eq(p.url, "http://t:9/custom", "the signal's endpoint is used as it is");
    ukko__otlp_plan_destroy(&p);

    tc.endpoint = "http://k:4318";
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_str_eq(p.url, "http://k:4318/v1/traces", "tracing.endpoint wins");
    ukko__otlp_plan_destroy(&p);

    static const char *disabled[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                     "OTEL_SDK_DISABLED=true", NULL};
    fake_env = disabled;
    tc.endpoint = NULL;
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_null(p.url);
    ukko__otlp_plan_destroy(&p);

    tc.endpoint = "c:4318";
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), UKKO_EINVAL);
    cr_assert(strstr(err, "http://"), "says what a URL looks like: %s", err);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp, headers_are_secret)
{
    static const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                "OTEL_EXPORTER_OTLP_HEADERS=api-key=s3cr%3Dt,x-team=orders", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    int found = 0;
    for (struct curl_slist *h = p.headers; h; h = h->next)
        found += !strcmp(h->data, "api-key: s3cr=t") + !strcmp(h->data, "x-team: orders");
    cr_assert_eq(found, 2, "both headers, percent-decoded");
    ukko__otlp_plan_destroy(&p);

    static const char *bad[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                "OTEL_EXPORTER_OTLP_HEADERS=api key=TOPSECRET", NULL};
    fake_env = bad;
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), UKKO_EINVAL);
    cr_assert(strstr(err, "OTEL_EXPORTER_OTLP_HEADERS"), "names the variable: %s", err);
    cr_assert_null(strstr(err, "TOPSECRET"), "never shows a value: %s", err);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp, resource_from_the_pod_and_the_variables)
{
    static const char *env[] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318", "KUBERNETES_SERVICE_HOST=10.0.0.1",
        "HOSTNAME=orders-2", "POD_NAMESPACE=shop",
        "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,service.name=fromattrs",
        "OTEL_SERVICE_NAME=orders", "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG=0.5", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_str_eq(res(&p, "k8s.pod.name"), "orders-2");
    cr_assert_str_eq(res(&p, "k8s.namespace.name"), "shop");
    cr_assert_str_eq(res(&p, "service.instance.id"), "shop.orders-2");
    cr_assert_str_eq(res(&p, "deployment.environment.name"), "prod");
    cr_assert_str_eq(res(&p, "service.name"), "orders", "OTEL_SERVICE_NAME wins");
    cr_assert_eq(p.sampler, UKKO__SAMPLER_PARENT_RATIO);
    cr_assert_float_eq(p.ratio, 0.5, 1e-9);
    ukko__otlp_plan_destroy(&p);

    tc.service_name = "from-config";
    tc.sampler = "always_off";
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    cr_assert_str_eq(res(&p, "service.name"), "from-config", "the ukko config wins");
    cr_assert_eq(p.sampler, UKKO__SAMPLER_ALWAYS_OFF);
    ukko__otlp_plan_destroy(&p);
}

static const cJSON *attr(const cJSON *attrs, const char *key)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(a, "key")), key))
            return cJSON_GetObjectItem(a, "value");
    }
    return NULL;
}

static void keep(ukko_span_t *sp)
{
    (void)sp; /* the test frees it */
}

Test(otlp, json_is_otlp)
{
    static const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                "OTEL_SERVICE_NAME=svc \"q\"", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);

    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    ukko_trace_ctx_t parent;
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    ukko_trace_parse(tp, strlen(tp), &parent);
    ukko_span_t *sp = ukko_span_start("process orders", UKKO_SPAN_CONSUMER, &parent);
    ukko_span_set_str(sp, "messaging.system", "kafka");
    ukko_span_set_int(sp, "messaging.kafka.offset", 9007199254740993LL);
    ukko_span_set_double(sp, "ratio", 0.5);
    ukko_span_set_bool(sp, "ok", true);
    ukko_span_record_error(sp, UKKO_EINVAL, "bad \"record\"\n");
    ukko_span_end(sp);
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);

    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    cr_assert_eq(ukko__otlp_json(&b, &p, &sp, 1), 0);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert(j, "valid JSON: %s", b.data);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *rattrs = cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"), "attributes");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(attr(rattrs, "service.name"),
                                                               "stringValue")),
                     "svc \"q\"");
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ss, "scope"),
                                                              "name")),
                     "ukko");
    cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(ss, "spans"), 0);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(s, "traceId")),
                     "0af7651916cd43dd8448eb211c80319c");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(s, "parentSpanId")),
                     "b7ad6b7169203331");
    cr_assert_eq(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(s, "spanId"))), 16);
    cr_assert_eq(cJSON_GetObjectItem(s, "kind")->valueint, 5);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(s, "startTimeUnixNano")),
              "times are unixNano strings");
    cJSON *sa = cJSON_GetObjectItem(s, "attributes");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(attr(sa, "messaging.kafka.offset"),
                                                              "intValue")),
                     "9007199254740993", "int64 as a string, no precision lost");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(attr(sa, "ok"), "boolValue")));
    cr_assert_float_eq(cJSON_GetObjectItem(attr(sa, "ratio"), "doubleValue")->valuedouble, 0.5,
                       1e-9);
    cJSON *st = cJSON_GetObjectItem(s, "status");
    cr_assert_eq(cJSON_GetObjectItem(st, "code")->valueint, 2);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(st, "message")), "bad \"record\"\n");
    cJSON *ev = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "events"), 0);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "name")), "exception");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
                         attr(cJSON_GetObjectItem(ev, "attributes"), "exception.type"),
                         "stringValue")),
                     "UKKO_EINVAL");
    cJSON_Delete(j);
    ukko_buf_destroy(&b);
    ukko__span_free(sp);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp, collector_down_drops_and_counts_without_blocking)
{
    /* A port nobody listens on: every export fails at once. */
    static const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.9.3:9", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    tc.max_queue = 64;
    tc.max_batch = 16;
    tc.schedule_delay_ms = 50;
    tc.export_timeout_ms = 300;
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    ukko__otlp_t *x = NULL;
    cr_assert_eq(ukko__otlp_new(&p, &tc, NULL, &x), 0);
    ukko__otlp_plan_destroy(&p);
    ukko__otlp_install(x);
    /* No assertion on time: that these return at all is the point. */
    for (int i = 0; i < 10000; i++) {
        ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
        ukko_span_end(sp);
    }
    ukko__otlp_counts_t c;
    int64_t deadline = ukko_now_ms() + 20000;
    do {
        ukko__otlp_counts(x, &c);
        if (c.dropped + c.failed + c.queued >= 10000 && c.failed > 0)
            break;
        usleep(20000);
    } while (ukko_now_ms() < deadline);
    cr_assert_eq(c.exported, 0);
    cr_assert(c.dropped > 0, "a full queue drops: %llu", (unsigned long long)c.dropped);
    cr_assert(c.failed > 0, "failed exports counted: %llu", (unsigned long long)c.failed);
    cr_assert_eq(c.dropped + c.failed + c.queued + 0, 10000,
                 "every span accounted for: dropped %llu failed %llu queued %llu",
                 (unsigned long long)c.dropped, (unsigned long long)c.failed,
                 (unsigned long long)c.queued);
    ukko__otlp_free(x);
    cr_assert_not(ukko_trace_enabled(), "freeing the exporter turns tracing off");
}

Test(otlp, text_that_is_not_utf8_is_replaced)
{
    ukko__otlp_plan_t p = {0};
    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    ukko_span_set_str(sp, "k", "ok \xc3\xa9 bad \xff\xfe end \xe2\x82");
    ukko_span_end(sp);
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    cr_assert_eq(ukko__otlp_json(&b, &p, &sp, 1), 0);
    cr_assert(strstr(b.data, "\"ok \xc3\xa9 bad \\ufffd\\ufffd end \\ufffd\\ufffd\""),
              "valid UTF-8 kept, each bad byte U+FFFD: %s", b.data);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert(j);
    cJSON_Delete(j);
    ukko_buf_destroy(&b);
    ukko__span_free(sp);
}

Test(otlp, a_full_queue_stops_recording_but_keeps_the_trace)
{
    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    ukko__trace_set_backlog(true);
    uint64_t before = ukko__trace_backlog_dropped();
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    cr_assert_not(ukko_span_recording(sp), "nothing recorded while the queue is full");
    char tp[56];
    ukko_span_traceparent(sp, tp);
    cr_assert_str_eq(tp + 52, "-01", "still sampled for whoever comes next: %s", tp);
    cr_assert_eq(ukko__trace_backlog_dropped(), before + 1, "and counted as dropped");
    ukko_span_end(sp);
    ukko__trace_set_backlog(false);
    sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    cr_assert(ukko_span_recording(sp), "recorded again once there is room");
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);
    ukko__span_free(sp);
}

static bool recording_again(void)
{
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    bool rec = ukko_span_recording(sp);
    ukko__span_free(sp);
    return rec;
}

/* A thread that found the queue full marks the backlog just after the
 * exporter emptied it (preempted between the two): with nothing recorded,
 * nothing is pushed and nothing popped, so the exporter itself must clear
 * the mark once its queue has room, or tracing stays off for good. */
Test(otlp, a_backlog_marked_after_the_queue_emptied_is_cleared)
{
    static const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.9.3:9", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    tc.schedule_delay_ms = 50;
    tc.export_timeout_ms = 300;
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    ukko__otlp_t *x = NULL;
    cr_assert_eq(ukko__otlp_new(&p, &tc, NULL, &x), 0);
    ukko__otlp_plan_destroy(&p);
    ukko__otlp_install(x);
    ukko__trace_set_backlog(true); /* the late mark: the queue is empty */
    int64_t deadline = ukko_now_ms() + 5000;
    bool rec;
    while (!(rec = recording_again()) && ukko_now_ms() < deadline)
        usleep(10000);
    ukko__otlp_free(x);
    cr_assert(rec, "spans are recorded again within 5 s of the queue having room");
}

Test(otlp, namespace_from_the_service_account_file)
{
    char path[] = "/tmp/ukko-otlp-ns-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "payments\n", 9), 9);
    close(fd);
    static const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                "KUBERNETES_SERVICE_HOST=10.0.0.1", "HOSTNAME=pay-0", NULL};
    fake_env = env;
    ukko_tracing_config_t tc = defaults();
    tc.namespace_path = path;
    ukko__otlp_plan_t p;
    char err[400];
    cr_assert_eq(ukko__otlp_plan(&tc, get, &p, err, sizeof(err)), 0);
    unlink(path);
    cr_assert_str_eq(res(&p, "k8s.namespace.name"), "payments", "read from the file, trimmed");
    cr_assert_str_eq(res(&p, "k8s.pod.name"), "pay-0", "HOSTNAME is the pod's name");
    cr_assert_str_eq(res(&p, "service.instance.id"), "payments.pay-0");
    ukko__otlp_plan_destroy(&p);
}
