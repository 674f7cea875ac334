/* fuzz_traceparent: W3C trace context from a consumed record's headers or a
 * node-to-node frame (node/trace.c), as any producer could write it, and
 * the OTEL_* list syntax (node/otlp.c). Invariants: never a read past the
 * value's length; an accepted version-00 traceparent formats back to the
 * very same bytes; an accepted one re-parses to the same context; nothing
 * leaks. */
#include "trace_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *ud, const char *key, const char *value)
{
    (void)key;
    (void)value;
    (*(size_t *)ud)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: ASan sees any read past the value. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    ukko_trace_ctx_t c;
    if (ukko_trace_parse(s, size, &c) == 0) {
        char out[UKKO_TRACEPARENT_LEN + 1];
        ukko_trace_format(&c, out);
        if (s[0] == '0' && s[1] == '0' && (size != UKKO_TRACEPARENT_LEN || memcmp(out, s, size)))
            abort();
        ukko_trace_ctx_t again;
        if (ukko_trace_parse(out, UKKO_TRACEPARENT_LEN, &again) != 0 ||
            memcmp(&again, &c, sizeof(c)))
            abort();
    }
    (void)ukko_tracestate_check(s, size);
    free(s);

    char *z = malloc(size + 1);
    if (!z)
        return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    size_t n = 0;
    (void)ukko__otlp_parse_kv(z, count, &n);
    free(z);
    return 0;
}
