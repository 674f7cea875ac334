/* Tests node/metrics.c: the text format's samples (integers, NaN, infinities,
 * escaped label values), histograms as Prometheus reads them (cumulative
 * buckets, +Inf equal to _count, labels before le) and the span counts every
 * node serves. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

void ukko__process_metrics(ukko_buf_t *out, void *ud);

static ukko_buf_t out;

static void setup(void)
{
    ukko_buf_init(&out, 0);
}

static void teardown(void)
{
    ukko_buf_destroy(&out);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 10);

static void has(const char *line)
{
    cr_assert(out.data && strstr(out.data, line), "expected the line\n%s\nin:\n%s", line,
              out.data ? out.data : "(nothing)");
}

Test(metrics, samples_print_integers_specials_and_escaped_labels)
{
    static const char *const k[] = {"path"};
    const char *v[] = {"a\"b\\c\nd"};
    ukko_prom_sample(&out, "x_total", k, v, 1, 42);
    ukko_prom_sample(&out, "y", NULL, NULL, 0, 0.25);
    ukko_prom_sample(&out, "z", NULL, NULL, 0, NAN);
    ukko_prom_sample(&out, "w", NULL, NULL, 0, -INFINITY);
    has("x_total{path=\"a\\\"b\\\\c\\nd\"} 42\n");
    has("y 0.25\n");
    has("z NaN\n");
    has("w -Inf\n");
}

Test(metrics, a_histogram_has_cumulative_buckets_and_inf_equal_to_count)
{
    static const double bounds[] = {0.01, 0.1, 1};
    ukko_prom_hist_t h = {0};
    ukko_prom_hist_observe(&h, bounds, 3, 0.005);
    ukko_prom_hist_observe(&h, bounds, 3, 0.05);
    ukko_prom_hist_observe(&h, bounds, 3, 0.05);
    ukko_prom_hist_observe(&h, bounds, 3, 7);
    static const char *const k[] = {"type"};
    const char *v[] = {"orders"};
    ukko_prom_family(&out, "op_seconds", "histogram", "Op time.");
    ukko_prom_histogram(&out, "op_seconds", k, v, 1, bounds, 3, h.buckets, h.count, h.sum);
    has("# TYPE op_seconds histogram\n"
        "op_seconds_bucket{type=\"orders\",le=\"0.01\"} 1\n"
        "op_seconds_bucket{type=\"orders\",le=\"0.1\"} 3\n"
        "op_seconds_bucket{type=\"orders\",le=\"1\"} 3\n"
        "op_seconds_bucket{type=\"orders\",le=\"+Inf\"} 4\n"
        "op_seconds_sum{type=\"orders\"} 7.105");
    has("op_seconds_count{type=\"orders\"} 4\n");
}

Test(metrics, a_histogram_without_labels_has_only_le)
{
    ukko_prom_hist_t h = {0};
    ukko_prom_hist_observe(&h, ukko_prom_duration_bounds, ukko_prom_duration_nbounds, 90);
    ukko_prom_histogram(&out, "handoff_seconds", NULL, NULL, 0, ukko_prom_duration_bounds,
                        ukko_prom_duration_nbounds, h.buckets, h.count, h.sum);
    has("handoff_seconds_bucket{le=\"0.001\"} 0\n");
    has("handoff_seconds_bucket{le=\"60\"} 0\n");
    has("handoff_seconds_bucket{le=\"+Inf\"} 1\n");
    has("handoff_seconds_sum 90\n");
    has("handoff_seconds_count 1\n");
}

Test(metrics, span_counts_are_served_by_every_node)
{
    double start = 0;
    ukko__process_metrics(&out, &start);
    has("# TYPE ukko_trace_spans_exported_total counter\n");
    has("ukko_trace_spans_dropped_total{reason=\"queue_full\"} 0\n");
    ukko_buf_destroy(&out);
    ukko_buf_init(&out, 0);
    ukko_metrics_spans_add(UKKO_SPANS_EXPORTED, 5);
    ukko_metrics_spans_add(UKKO_SPANS_DROPPED_QUEUE, 2);
    ukko_metrics_spans_add(UKKO_SPANS_DROPPED_EXPORT, 3);
    ukko_metrics_spans_add(UKKO_SPANS_NCOUNTS, 9); /* out of range: ignored */
    ukko__process_metrics(&out, &start);
    has("ukko_trace_spans_exported_total 5\n");
    has("ukko_trace_spans_dropped_total{reason=\"queue_full\"} 2\n");
    has("ukko_trace_spans_dropped_total{reason=\"export_failed\"} 3\n");
}
