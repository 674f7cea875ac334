/* metrics.c: the Prometheus text format (0.0.4) writer and the process
 * figures (RSS, CPU, open fds, uptime, build info). Collectors run on the
 * loop thread while a /metrics request is answered. */
#include "ukko.h"

#include <dirent.h>
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
}
