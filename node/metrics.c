/* metrics.c: the Prometheus text format (0.0.4) writer (families, samples,
 * histograms), the process figures (RSS, CPU, open fds, uptime, build info)
 * and tracing's span counts. Collectors run on the loop thread while a
 * /metrics request is answered; the span counts are atomics any thread adds. */
#include "ukko.h"

#include <dirent.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

void ukko_prom_family(ukko_buf_t *out, const char *name, const char *type, const char *help)
{
    ukko_buf_printf(out, "# HELP %s ", name);
    /* HELP text escapes only backslash and newline. */
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            ukko_buf_puts(out, "\\\\");
        else if (*p == '\n')
            ukko_buf_puts(out, "\\n");
        else
            ukko_buf_append(out, p, 1);
    }
    ukko_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

void ukko_prom_sample(ukko_buf_t *out, const char *name, const char *const *label_keys,
                      const char *const *label_values, size_t nlabels, double value)
{
    ukko_buf_puts(out, name);
    if (nlabels) {
        ukko_buf_puts(out, "{");
        for (size_t i = 0; i < nlabels; i++) {
            ukko_buf_printf(out, "%s%s=\"", i ? "," : "", label_keys[i]);
            for (const char *p = label_values[i]; *p; p++) {
                if (*p == '\\')
                    ukko_buf_puts(out, "\\\\");
                else if (*p == '"')
                    ukko_buf_puts(out, "\\\"");
                else if (*p == '\n')
                    ukko_buf_puts(out, "\\n");
                else
                    ukko_buf_append(out, p, 1);
            }
            ukko_buf_puts(out, "\"");
        }
        ukko_buf_puts(out, "}");
    }
    if (isnan(value))
        ukko_buf_puts(out, " NaN\n");
    else if (isinf(value))
        ukko_buf_puts(out, value > 0 ? " +Inf\n" : " -Inf\n");
    else if (value == floor(value) && fabs(value) < 1e15)
        ukko_buf_printf(out, " %.0f\n", value);
    else
        ukko_buf_printf(out, " %.17g\n", value);
}

const double ukko_prom_duration_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,   5,    10,   30,  60};
const size_t ukko_prom_duration_nbounds =
    sizeof(ukko_prom_duration_bounds) / sizeof(ukko_prom_duration_bounds[0]);

void ukko_prom_hist_observe(ukko_prom_hist_t *h, const double *bounds, size_t nbounds, double v)
{
    if (nbounds > UKKO_PROM_MAX_BUCKETS)
        nbounds = UKKO_PROM_MAX_BUCKETS;
    for (size_t i = 0; i < nbounds; i++)
        if (v <= bounds[i])
            h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void ukko_prom_histogram(ukko_buf_t *out, const char *name, const char *const *label_keys,
                         const char *const *label_values, size_t nlabels, const double *bounds,
                         size_t nbounds, const uint64_t *buckets, uint64_t count, double sum)
{
    char series[160], le[32];
    const char *keys[8], *vals[8];
    if (nlabels > 7)
        nlabels = 7;
    for (size_t i = 0; i < nlabels; i++) {
        keys[i] = label_keys[i];
        vals[i] = label_values[i];
    }
    keys[nlabels] = "le";
    vals[nlabels] = le;
    snprintf(series, sizeof(series), "%s_bucket", name);
    for (size_t b = 0; b < nbounds; b++) {
        /* %g keeps 0.001 and 60 as Prometheus clients print them. */
        snprintf(le, sizeof(le), "%g", bounds[b]);
        ukko_prom_sample(out, series, keys, vals, nlabels + 1, (double)buckets[b]);
    }
    snprintf(le, sizeof(le), "+Inf");
    ukko_prom_sample(out, series, keys, vals, nlabels + 1, (double)count);
    snprintf(series, sizeof(series), "%s_sum", name);
    ukko_prom_sample(out, series, keys, vals, nlabels, sum);
    snprintf(series, sizeof(series), "%s_count", name);
    ukko_prom_sample(out, series, keys, vals, nlabels, (double)count);
}

/* Added by the span exporter's threads, read by the collector: relaxed, as
 * nothing else is ordered by them. */
static _Atomic uint64_t spans[UKKO_SPANS_NCOUNTS];

void ukko_metrics_spans_add(ukko_spans_count_t what, uint64_t n)
{
    if ((unsigned)what < UKKO_SPANS_NCOUNTS)
        atomic_fetch_add_explicit(&spans[what], n, memory_order_relaxed);
}

static void span_metrics(ukko_buf_t *out)
{
    ukko_prom_family(out, "ukko_trace_spans_exported_total", "counter",
                     "Spans the OTLP collector accepted.");
    ukko_prom_sample(out, "ukko_trace_spans_exported_total", NULL, NULL, 0,
                     (double)atomic_load_explicit(&spans[UKKO_SPANS_EXPORTED],
                                                  memory_order_relaxed));
    ukko_prom_family(out, "ukko_trace_spans_dropped_total", "counter",
                     "Spans dropped, by reason: queue_full (the export queue was full), "
                     "export_failed (the collector refused or was unreachable past the retries).");
    static const char *const rk[] = {"reason"};
    const char *q[] = {"queue_full"}, *e[] = {"export_failed"};
    ukko_prom_sample(out, "ukko_trace_spans_dropped_total", rk, q, 1,
                     (double)atomic_load_explicit(&spans[UKKO_SPANS_DROPPED_QUEUE],
                                                  memory_order_relaxed));
    ukko_prom_sample(out, "ukko_trace_spans_dropped_total", rk, e, 1,
                     (double)atomic_load_explicit(&spans[UKKO_SPANS_DROPPED_EXPORT],
                                                  memory_order_relaxed));
}

static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return NAN;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : NAN;
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* Process figures with the names Prometheus client libraries use, so the
 * usual dashboards work. ud points at the start time (wall clock, seconds). */
void ukko__process_metrics(ukko_buf_t *out, void *ud);
void ukko__process_metrics(ukko_buf_t *out, void *ud)
{
    const double start = *(const double *)ud;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    struct rlimit rl;
    double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : NAN;

    ukko_prom_family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    ukko_prom_sample(out, "process_resident_memory_bytes", NULL, NULL, 0, rss_bytes());
    ukko_prom_family(out, "process_cpu_seconds_total", "counter",
                     "Total user and system CPU time spent in seconds.");
    ukko_prom_sample(out, "process_cpu_seconds_total", NULL, NULL, 0, cpu);
    ukko_prom_family(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    ukko_prom_sample(out, "process_open_fds", NULL, NULL, 0, open_fds());
    ukko_prom_family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    ukko_prom_sample(out, "process_max_fds", NULL, NULL, 0, max_fds);
    ukko_prom_family(out, "process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.");
    ukko_prom_sample(out, "process_start_time_seconds", NULL, NULL, 0, start);
    ukko_prom_family(out, "ukko_uptime_seconds", "gauge", "Seconds since this node started.");
    ukko_prom_sample(out, "ukko_uptime_seconds", NULL, NULL, 0, now - start);
    static const char *const keys[] = {"version", "compiler"};
    const char *const vals[] = {UKKO_VERSION, __VERSION__};
    ukko_prom_family(out, "ukko_build_info", "gauge", "Build information; the value is always 1.");
    ukko_prom_sample(out, "ukko_build_info", keys, vals, 2, 1);
    span_metrics(out);
}
