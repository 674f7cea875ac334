/* tsan_trace.c: spans from many threads into the OTLP exporter's lock-free
 * queue (node/trace.c, node/otlp.c), plain C so that it runs under
 * ThreadSanitizer (label tsan). Four threads start, nest, annotate and end
 * spans as fast as they can while the exporter thread drains the queue
 * towards a collector that is down; then every span is accounted for
 * (dropped, failed or still queued) and nothing raced. Ends with
 * "N passed, N failed". */
#include "trace_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define SPANS 20000

static const char *get(const char *name)
{
    return strcmp(name, "OTEL_EXPORTER_OTLP_ENDPOINT") ? NULL : "http://127.0.9.3:9";
}

static void *work(void *arg)
{
    (void)arg;
    for (int i = 0; i < SPANS / 2; i++) {
        ukko_span_t *outer = ukko_span_start("outer", UKKO_SPAN_CONSUMER, NULL);
        ukko_span_t *prev = ukko_trace_enter(outer);
        ukko_span_t *inner = ukko_span_start("inner", UKKO_SPAN_PRODUCER, NULL);
        ukko_span_set_int(inner, "i", i);
        ukko_span_add_event(inner, "e", "k", "v");
        ukko_span_end(inner);
        ukko_trace_leave(prev);
        ukko_span_end(outer);
    }
    return NULL;
}

int main(void)
{
    ukko_log_setup(UKKO_LOG_ERROR, UKKO_LOG_TEXT);
    ukko_tracing_config_t tc = {.max_queue = 256, .max_batch = 64, .schedule_delay_ms = 5,
                                .export_timeout_ms = 200};
    ukko__otlp_plan_t plan;
    char err[400];
    ukko__otlp_t *x = NULL;
    if (ukko__otlp_plan(&tc, get, &plan, err, sizeof(err)) < 0 ||
        ukko__otlp_new(&plan, &tc, NULL, &x) < 0) {
        printf("the exporter did not start: %s\n0 passed, 1 failed\n", err);
        return 1;
    }
    ukko__otlp_plan_destroy(&plan);
    ukko__otlp_install(x);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ukko__otlp_stop(x);
    ukko__otlp_counts_t c;
    ukko__otlp_counts(x, &c);
    uint64_t total = c.dropped + c.failed + c.exported + c.queued;
    int ok = total == (uint64_t)THREADS * SPANS && c.exported == 0;
    printf("%s: %llu spans from %d threads: dropped %llu, failed %llu, queued %llu\n",
           ok ? "ok" : "FAIL", (unsigned long long)total, THREADS,
           (unsigned long long)c.dropped, (unsigned long long)c.failed,
           (unsigned long long)c.queued);
    ukko__otlp_free(x);
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
