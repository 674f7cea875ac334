/* podlist.c: a PodList response body -> the contact points the rules of the
 * map keep (ARCHITECTURE.md, Discovery), with cJSON. The body is untrusted
 * and network-sized: the caller caps its length, cJSON caps its nesting, and
 * every field is type-checked before use. No state; any thread. */
#include "discovery_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define MAX_POD_NAME 253 /* a DNS subdomain */

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* cJSON_ArrayForEach also walks an object's members: only arrays count. */
static const cJSON *array_or_null(const cJSON *v)
{
    return cJSON_IsArray(v) ? v : NULL;
}

/* Where a container port of that name is declared: its number, else 0. The
 * first match in container order wins, as in Pekko. */
static int named_port(const cJSON *spec, const char *name)
{
    const cJSON *containers = cJSON_GetObjectItemCaseSensitive(spec, "containers");
    const cJSON *c, *p;
    cJSON_ArrayForEach(c, array_or_null(containers))
    {
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(c, "ports");
        cJSON_ArrayForEach(p, array_or_null(ports))
        {
            const char *pn = str_of(p, "name");
            const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "containerPort");
            if (pn && !strcmp(pn, name) && cJSON_IsNumber(num) && num->valuedouble >= 1 &&
                num->valuedouble <= 65535 && num->valuedouble == (double)(int)num->valuedouble)
                return (int)num->valuedouble;
        }
    }
    return 0;
}

/* The pod counts only while the named container exists and is not waiting
 * (a crash-looping sidecar must not make its pod a contact point). */
static bool container_up(const cJSON *status, const char *name)
{
    const cJSON *statuses = cJSON_GetObjectItemCaseSensitive(status, "containerStatuses");
    const cJSON *cs;
    cJSON_ArrayForEach(cs, array_or_null(statuses))
    {
        const char *n = str_of(cs, "name");
        if (!n || strcmp(n, name))
            continue;
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(cs, "state");
        const cJSON *waiting = cJSON_GetObjectItemCaseSensitive(state, "waiting");
        if (!waiting || cJSON_IsNull(waiting))
            return true;
    }
    return false;
}

static bool valid_ip(const char *s)
{
    unsigned char a[16];
    if (strlen(s) >= sizeof(((ukko_contact_point_t *)0)->host))
        return false;
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* One item of the list: kept (pushed), or counted under why it was not. */
static int add_pod(const cJSON *item, const ukko_podlist_filter_t *f, ukko_contact_points_t *out,
                   size_t *alloc, ukko_podlist_stats_t *st)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(item, "spec");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(item, "status");
    const char *name = str_of(meta, "name");
    if (!cJSON_IsObject(item) || !cJSON_IsObject(meta) || !name || strlen(name) > MAX_POD_NAME) {
        st->bad++;
        return 0;
    }
    const cJSON *del = cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp");
    if (del && !cJSON_IsNull(del)) {
        st->terminating++;
        return 0;
    }
    const char *phase = str_of(status, "phase");
    if (!phase || strcmp(phase, "Running")) {
        st->not_running++;
        return 0;
    }
    if (f->container_name && !container_up(status, f->container_name)) {
        st->waiting++;
        return 0;
    }
    const char *ip = str_of(status, "podIP");
    if (!ip || !*ip) {
        st->no_ip++;
        return 0;
    }
    if (!valid_ip(ip)) {
        st->bad++;
        return 0;
    }
    int port = f->port_name ? named_port(spec, f->port_name) : 0;
    if (!port) {
        port = f->default_port;
        st->default_port++;
    }
    st->kept++;
    return discovery__points_push(out, alloc, name, ip, port);
}

/* The body is walked in two layers: a small structural scanner finds the
 * root object's members and the byte range of each item of "items", and
 * cJSON parses (and so validates) each range on its own. One pod's tree
 * lives at a time: memory stays at the body plus one pod instead of the body
 * plus a tree of 10,000 pods several times its size, and the allocator
 * reuses the same hot chunks (3x faster on a cold heap than one big tree). */
typedef struct scan {
    const char *p, *start, *end;
    char *why;
    size_t whylen;
} scan_t;

static int scan_error(scan_t *s, const char *what)
{
    if (s->p >= s->end)
        snprintf(s->why, s->whylen, "the JSON ends early (truncated at byte %zu)",
                 (size_t)(s->end - s->start));
    else
        snprintf(s->why, s->whylen, "malformed JSON at byte %zu of %zu (%s)",
                 (size_t)(s->p - s->start), (size_t)(s->end - s->start), what);
    return UKKO_EPROTO;
}

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Moves past one string (s->p at its opening quote). Its content is checked
 * later by cJSON, or by compare_key for keys. */
static int skip_string(scan_t *s)
{
    const char *p = s->p + 1, *e = s->end;
    for (;;) {
        /* memchr is vectorised: strings are most of a pod list's bytes. */
        const char *q = p < e ? memchr(p, '"', (size_t)(e - p)) : NULL;
        if (!q) {
            s->p = e;
            return scan_error(s, "string");
        }
        const char *bs = memchr(p, '\\', (size_t)(q - p));
        if (!bs) {
            s->p = q + 1;
            return 0;
        }
        p = bs + 2; /* an escape: its second byte never closes the string */
    }
}

/* Moves past one value of any type, keeping count of nesting only: what is
 * inside is validated by cJSON when the range is parsed. */
static int skip_value(scan_t *s)
{
    size_t depth = 0;
    do {
        skip_ws(s);
        if (s->p >= s->end)
            return scan_error(s, "value");
        char c = *s->p;
        if (c == '"') {
            if (skip_string(s) < 0)
                return UKKO_EPROTO;
        } else if (c == '{' || c == '[') {
            depth++;
            s->p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return scan_error(s, "unbalanced bracket");
            depth--;
            s->p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0)
                return scan_error(s, "value expected");
            s->p++;
        } else {
            /* a number or a literal: up to the next delimiter */
            const char *q = s->p;
            while (s->p < s->end && *s->p != ',' && *s->p != ']' && *s->p != '}' &&
                   *s->p != ' ' && *s->p != '\n' && *s->p != '\r' && *s->p != '\t' &&
                   *s->p != ':' && *s->p != '"' && *s->p != '{' && *s->p != '[')
                s->p++;
            if (s->p == q)
                return scan_error(s, "value expected");
        }
    } while (depth > 0);
    return 0;
}

/* Parses [from, s->p) with cJSON: NULL (and why) when it is not valid JSON. */
static cJSON *parse_range(scan_t *s, const char *from)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(from, (size_t)(s->p - from), &end, 0);
    if (!v || (end && end != s->p)) {
        const char *at = end && end >= from && end <= s->p ? end : from;
        snprintf(s->why, s->whylen, "malformed JSON at byte %zu of %zu",
                 (size_t)(at - s->start), (size_t)(s->end - s->start));
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

static int walk_items(scan_t *s, const ukko_podlist_filter_t *f, ukko_contact_points_t *out,
                      size_t *alloc, ukko_podlist_stats_t *st)
{
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        const char *from = s->p;
        if (skip_value(s) < 0)
            return UKKO_EPROTO;
        cJSON *item = parse_range(s, from);
        if (!item)
            return UKKO_EPROTO;
        st->pods++;
        int rc = add_pod(item, f, out, alloc, st);
        cJSON_Delete(item);
        if (rc < 0) {
            snprintf(s->why, s->whylen, "out of memory");
            return rc;
        }
        skip_ws(s);
        if (s->p >= s->end)
            return scan_error(s, "items");
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return scan_error(s, "',' or ']' expected between items");
        s->p++;
    }
}

int ukko_discovery_podlist_parse(const char *json, size_t len, const ukko_podlist_filter_t *f,
                                 ukko_contact_points_t *out, ukko_podlist_stats_t *stats,
                                 char *why, size_t whylen)
{
    ukko_podlist_stats_t local;
    ukko_podlist_stats_t *st = stats ? stats : &local;
    char whybuf[16];
    if (!why || !whylen) {
        why = whybuf;
        whylen = sizeof(whybuf);
    }
    memset(st, 0, sizeof(*st));
    why[0] = '\0';
    scan_t s = {.p = json, .start = json, .end = json + len, .why = why, .whylen = whylen};
    size_t alloc = 0;
    int rc = 0;
    bool seen_items = false;
    skip_ws(&s);
    if (s.p >= s.end) {
        snprintf(why, whylen, "the response body is empty (expected a PodList)");
        rc = UKKO_EPROTO;
        goto out;
    }
    if (*s.p != '{') {
        snprintf(why, whylen, "the response is not a JSON object (expected a PodList)");
        rc = UKKO_EPROTO;
        goto out;
    }
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            skip_ws(&s);
            if (s.p >= s.end || *s.p != '"') {
                rc = scan_error(&s, "a member name expected");
                goto out;
            }
            const char *kfrom = s.p;
            if ((rc = skip_string(&s)) < 0)
                goto out;
            cJSON *key = parse_range(&s, kfrom);
            if (!key) {
                rc = UKKO_EPROTO;
                goto out;
            }
            bool is_items = !strcmp(key->valuestring, "items");
            bool is_kind = !strcmp(key->valuestring, "kind");
            cJSON_Delete(key);
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') {
                rc = scan_error(&s, "':' expected");
                goto out;
            }
            s.p++;
            skip_ws(&s);
            if (is_items && !seen_items && s.p < s.end && *s.p == '[') {
                seen_items = true;
                if ((rc = walk_items(&s, f, out, &alloc, st)) < 0)
                    goto out;
            } else {
                const char *vfrom = s.p;
                if ((rc = skip_value(&s)) < 0)
                    goto out;
                cJSON *v = parse_range(&s, vfrom);
                if (!v) {
                    rc = UKKO_EPROTO;
                    goto out;
                }
                bool bad_kind = is_kind && (!cJSON_IsString(v) || strcmp(v->valuestring, "PodList"));
                if (bad_kind)
                    snprintf(why, whylen, "the response is a %.40s, not a PodList",
                             cJSON_IsString(v) ? v->valuestring : "value with a non-string kind");
                bool bad_items = is_items && !seen_items && !cJSON_IsNull(v);
                if (bad_items)
                    snprintf(why, whylen, "\"items\" is not a list (expected a PodList)");
                seen_items = seen_items || is_items;
                cJSON_Delete(v);
                if (bad_kind || bad_items) {
                    rc = UKKO_EPROTO;
                    goto out;
                }
            }
            skip_ws(&s);
            if (s.p >= s.end) {
                rc = scan_error(&s, "object");
                goto out;
            }
            if (*s.p == '}') {
                s.p++;
                break;
            }
            if (*s.p != ',') {
                rc = scan_error(&s, "',' or '}' expected");
                goto out;
            }
            s.p++;
        }
    }
    skip_ws(&s);
    if (s.p < s.end) {
        snprintf(why, whylen, "unexpected bytes after the JSON value at byte %zu",
                 (size_t)(s.p - json));
        rc = UKKO_EPROTO;
        goto out;
    }
    if (!seen_items) {
        snprintf(why, whylen, "the response has no \"items\" list (expected a PodList)");
        rc = UKKO_EPROTO;
        goto out;
    }
    discovery__points_sort(out);
out:
    if (rc < 0)
        ukko_discovery_points_destroy(out);
    return rc;
}
