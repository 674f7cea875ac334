/* fuzz_podlist: the pod-list parser (discovery/podlist.c) on arbitrary bytes,
 * as an API server (or whatever answers in its place) could send them. The
 * first byte picks the filter. Invariants: an error leaves no points; on
 * success every point has a valid IP, a port in 1..65535 and a pod name, the
 * set is sorted, and the counts add up; no leak, no overflow. And whenever
 * cJSON accepts the body as JSON, the result (points, counts, failure) is the
 * same as the rules of the map applied to cJSON's tree (reference() below):
 * the scanner that skips what it does not need reads what it needs right. */
#include "discovery.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------- the reference, on a tree */

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *array_or_null(const cJSON *v)
{
    return cJSON_IsArray(v) ? v : NULL;
}

static int ref_port(const cJSON *spec, const char *name)
{
    const cJSON *c, *p;
    cJSON_ArrayForEach(c, array_or_null(cJSON_GetObjectItemCaseSensitive(spec, "containers")))
    {
        cJSON_ArrayForEach(p, array_or_null(cJSON_GetObjectItemCaseSensitive(c, "ports")))
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

static bool ref_container_up(const cJSON *status, const char *name)
{
    const cJSON *cs;
    cJSON_ArrayForEach(cs,
                       array_or_null(cJSON_GetObjectItemCaseSensitive(status, "containerStatuses")))
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

static bool ref_valid_ip(const char *s)
{
    unsigned char a[16];
    return strlen(s) < 64 && (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1);
}

static void ref_pod(const cJSON *item, const ukko_podlist_filter_t *f, ukko_contact_points_t *out,
                    ukko_podlist_stats_t *st)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(item, "status");
    const char *name = str_of(meta, "name");
    const char *phase = str_of(status, "phase");
    const char *ip = str_of(status, "podIP");
    const cJSON *del = cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp");
    st->pods++;
    if (!cJSON_IsObject(item) || !cJSON_IsObject(meta) || !name || !*name || strlen(name) > 253)
        st->bad++;
    else if (del && !cJSON_IsNull(del))
        st->terminating++;
    else if (!phase || strcmp(phase, "Running"))
        st->not_running++;
    else if (f->container_name && !ref_container_up(status, f->container_name))
        st->waiting++;
    else if (!ip || !*ip)
        st->no_ip++;
    else if (!ref_valid_ip(ip))
        st->bad++;
    else {
        int port = f->port_name
                       ? ref_port(cJSON_GetObjectItemCaseSensitive(item, "spec"), f->port_name)
                       : 0;
        if (!port) {
            port = f->default_port;
            st->default_port++;
        }
        st->kept++;
        out->v = realloc(out->v, (out->n + 1) * sizeof(out->v[0]));
        if (!out->v)
            abort();
        out->v[out->n].pod = strdup(name);
        snprintf(out->v[out->n].host, sizeof(out->v[0].host), "%s", ip);
        out->v[out->n].port = port;
        out->n++;
    }
}

/* 1: cJSON does not take it as JSON (no verdict); 0 a PodList; -1 not one. */
static int reference(const char *json, size_t len, const ukko_podlist_filter_t *f,
                     ukko_contact_points_t *out, ukko_podlist_stats_t *st)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return 1;
    for (const char *p = end; p < json + len; p++)
        if ((unsigned char)*p > ' ') {
            cJSON_Delete(root);
            return 1;
        }
    int rc = 0;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    const cJSON *item;
    if (!cJSON_IsObject(root) || (kind && (!cJSON_IsString(kind) ||
                                           strcmp(kind->valuestring, "PodList"))) ||
        !(cJSON_IsArray(items) || cJSON_IsNull(items)))
        rc = -1;
    else {
        cJSON_ArrayForEach(item, array_or_null(items)) ref_pod(item, f, out, st);
        /* Where a watch of the list's changes starts ("" when none or too long). */
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion");
        if (cJSON_IsObject(meta) && cJSON_IsString(rv) &&
            strlen(rv->valuestring) < sizeof(st->resource_version))
            strcpy(st->resource_version, rv->valuestring);
    }
    cJSON_Delete(root);
    return rc;
}

static int cmp_point(const void *a, const void *b)
{
    const ukko_contact_point_t *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    if (c)
        return c;
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    return strcmp(x->pod, y->pod);
}

/* Same points regardless of order (the reference does not sort). */
static bool same_points(ukko_contact_points_t *a, ukko_contact_points_t *b)
{
    if (a->n != b->n)
        return false;
    ukko_contact_points_t ca = {0}, cb = {0};
    if (ukko_discovery_points_copy(&ca, a) < 0 || ukko_discovery_points_copy(&cb, b) < 0)
        abort();
    if (ca.n > 1) {
        qsort(ca.v, ca.n, sizeof(ca.v[0]), cmp_point);
        qsort(cb.v, cb.n, sizeof(cb.v[0]), cmp_point);
    }
    bool eq = ukko_discovery_points_equal(&ca, &cb);
    ukko_discovery_points_destroy(&ca);
    ukko_discovery_points_destroy(&cb);
    return eq;
}

static bool lax_unicode_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u') {
            for (size_t k = 2; k < 6; k++)
                if (i + k >= n || !isxdigit((unsigned char)s[i + k]))
                    return true;
        }
        i++; /* the escaped byte */
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const ports[] = {NULL, "management", "http", ""};
    static const char *const containers[] = {NULL, "ukko", "sidecar", "user-function"};
    ukko_podlist_filter_t f = {ports[data[0] & 3], containers[(data[0] >> 2) & 3],
                               (data[0] >> 4) ? 8558 : 1};
    data++;
    size--;
    ukko_contact_points_t cps = {0};
    ukko_podlist_stats_t st;
    char why[256];
    int rc = ukko_discovery_podlist_parse((const char *)data, size, &f, &cps, &st, why,
                                          sizeof(why));
    ukko_contact_points_t ref = {0};
    ukko_podlist_stats_t rst;
    memset(&rst, 0, sizeof(rst));
    /* cJSON reads a \u without four hex digits as U+0000 where JSON (and the
     * scanner) refuse it: no verdict to compare on such inputs. */
    int verdict = lax_unicode_escape((const char *)data, size)
                      ? 1
                      : reference((const char *)data, size, &f, &ref, &rst);
    if (verdict != 1) {
        if ((verdict == 0) != (rc == 0))
            abort(); /* cJSON's tree and the scanner disagree on the list */
        if (rc == 0 && (!same_points(&cps, &ref) || memcmp(&st, &rst, sizeof(st)) != 0))
            abort(); /* ... or on what it holds */
    }
    ukko_discovery_points_destroy(&ref);
    if (rc < 0) {
        if (cps.n != 0 || cps.v != NULL || why[0] == '\0')
            abort();
        return 0;
    }
    if (rc != 0 || st.kept != cps.n || st.kept > st.pods ||
        st.kept + st.terminating + st.not_running + st.no_ip + st.waiting + st.bad != st.pods)
        abort();
    for (size_t i = 0; i < cps.n; i++) {
        unsigned char a[16];
        const ukko_contact_point_t *cp = &cps.v[i];
        if (inet_pton(AF_INET, cp->host, a) != 1 && inet_pton(AF_INET6, cp->host, a) != 1)
            abort();
        if (cp->port < 1 || cp->port > 65535 || !cp->pod)
            abort();
    }
    /* Sorted: re-sorting a copy must change nothing. */
    ukko_contact_points_t copy = {0};
    if (ukko_discovery_points_copy(&copy, &cps) == 0) {
        if (!ukko_discovery_points_equal(&copy, &cps))
            abort();
        ukko_discovery_points_destroy(&copy);
    }
    ukko_discovery_points_destroy(&cps);
    return 0;
}
