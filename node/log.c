/* log.c: structured log lines on stderr. Any thread may log: a line is built
 * in a local buffer and written with one write(2), so lines never interleave.
 * The level and format are atomics set once at start (and by tests). A line
 * written inside a traced handler carries its trace_id and span_id. */
#include "trace_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Relaxed: a level change need not be seen at once by other threads. */
static _Atomic int g_level = UKKO_LOG_INFO;
static _Atomic int g_format = UKKO_LOG_JSON;
static _Atomic int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void ukko_log_setup(ukko_log_level_t level, ukko_log_format_t format)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&g_format, (int)format, memory_order_relaxed);
}

void ukko_log_set_fd(int fd)
{
    atomic_store_explicit(&g_fd, fd, memory_order_relaxed);
}

bool ukko_log_enabled(ukko_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

int ukko_log_level_parse(const char *s, ukko_log_level_t *out)
{
    for (int i = 0; i <= UKKO_LOG_OFF; i++)
        if (!strcasecmp(s, level_names[i])) {
            *out = (ukko_log_level_t)i;
            return 0;
        }
    if (!strcasecmp(s, "warning")) {
        *out = UKKO_LOG_WARN;
        return 0;
    }
    return UKKO_EINVAL;
}

/* A text value is quoted when it would not read back as one word. */
static void text_value(ukko_buf_t *b, const char *s)
{
    if (*s && !strpbrk(s, " \t\r\n\"=\\"))
        ukko_buf_puts(b, s);
    else
        ukko_buf_json_str(b, s);
}

void ukko_log_write(ukko_log_level_t level, const char *component,
                    const ukko_log_field_t *fields, size_t nfields, const char *fmt, ...)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 64 * 1024);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(tv.tv_usec / 1000));
    const char *lvl = level_names[level <= UKKO_LOG_ERROR ? level : UKKO_LOG_ERROR];

    bool text = atomic_load_explicit(&g_format, memory_order_relaxed) == UKKO_LOG_TEXT;
    char trace_hex[33], span_hex[17];
    bool traced = ukko__trace_log_ids(trace_hex, span_hex);
    if (text) {
        ukko_buf_printf(&b, "%s %-5s %s: %s", ts, lvl, component, msg);
        for (size_t i = 0; i < nfields; i++) {
            ukko_buf_printf(&b, " %s=", fields[i].key);
            switch (fields[i].type) {
            case 's': text_value(&b, fields[i].v.s ? fields[i].v.s : "null"); break;
            case 'i': ukko_buf_printf(&b, "%lld", fields[i].v.i); break;
            case 'f': ukko_buf_printf(&b, "%g", fields[i].v.f); break;
            default: ukko_buf_puts(&b, fields[i].v.b ? "true" : "false");
            }
        }
        if (traced)
            ukko_buf_printf(&b, " trace_id=%s span_id=%s", trace_hex, span_hex);
    } else {
        ukko_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, lvl);
        ukko_buf_json_str(&b, component);
        ukko_buf_puts(&b, ",\"msg\":");
        ukko_buf_json_str(&b, msg);
        for (size_t i = 0; i < nfields; i++) {
            ukko_buf_puts(&b, ",");
            ukko_buf_json_str(&b, fields[i].key);
            ukko_buf_puts(&b, ":");
            switch (fields[i].type) {
            case 's':
                if (fields[i].v.s)
                    ukko_buf_json_str(&b, fields[i].v.s);
                else
                    ukko_buf_puts(&b, "null");
                break;
            case 'i': ukko_buf_printf(&b, "%lld", fields[i].v.i); break;
            case 'f': ukko_buf_printf(&b, "%.17g", fields[i].v.f); break;
            default: ukko_buf_puts(&b, fields[i].v.b ? "true" : "false");
            }
        }
        if (traced)
            ukko_buf_printf(&b, ",\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace_hex, span_hex);
        ukko_buf_puts(&b, "}");
    }
    ukko_buf_puts(&b, "\n");
    if (b.data) {
        int fd = atomic_load_explicit(&g_fd, memory_order_relaxed);
        ssize_t off = 0;
        while ((size_t)off < b.len) {
            ssize_t n = write(fd, b.data + off, b.len - (size_t)off);
            if (n <= 0)
                break; /* nowhere to report a failing log; drop the line */
            off += n;
        }
    }
    ukko_buf_destroy(&b);
}
