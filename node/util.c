/* util.c: error texts, the monotonic clock and durations as the config
 * writes them. No state; any thread. */
#include "ukko.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ukko_strerror(int rc)
{
    switch (rc) {
    case 0: return "ok";
    case UKKO_EINVAL: return "invalid argument or input";
    case UKKO_ENOMEM: return "out of memory";
    case UKKO_E2BIG: return "over its size limit";
    case UKKO_ENOENT: return "not found";
    case UKKO_EAGAIN: return "try again";
    case UKKO_EPROTO: return "protocol error";
    case UKKO_ETIMEDOUT: return "timed out";
    case UKKO_ECANCELED: return "canceled";
    default: return rc < 0 ? strerror(-rc) : "unknown";
    }
}

int64_t ukko_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ukko_format_duration(int64_t ms, char *out, size_t outlen)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(out, outlen, "%lldh", (long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(out, outlen, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, outlen, "%llds", (long long)(ms / 1000));
    else
        snprintf(out, outlen, "%lldms", (long long)ms);
}

int ukko_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return UKKO_EINVAL;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0 || s[0] == '+' || s[0] == '-' || s[0] == ' ')
        return UKKO_EINVAL;
    double mult;
    if (!strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s"))
        mult = 1000;
    else if (!strcmp(end, "m"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else
        return UKKO_EINVAL;
    double r = v * mult;
    if (r > 9e15 || r != floor(r))
        return UKKO_EINVAL; /* sub-millisecond precision is not kept: say so */
    *ms = (int64_t)r;
    return 0;
}
