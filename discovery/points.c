/* points.c: sets of contact points (sorting, comparing, copying, JSON) and
 * the static list's "host:port" parser. No state; any thread, one set at a
 * time. Invariant: a set handed out is sorted, so equal sets compare equal. */
#include "discovery_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ukko_discovery_points_destroy(ukko_contact_points_t *cps)
{
    if (!cps)
        return;
    for (size_t i = 0; i < cps->n; i++)
        free(cps->v[i].pod);
    free(cps->v);
    cps->v = NULL;
    cps->n = 0;
}

int discovery__points_push(ukko_contact_points_t *cps, size_t *alloc, const char *pod,
                           const char *host, int port)
{
    if (cps->n == *alloc) {
        size_t n = *alloc ? *alloc * 2 : 8;
        ukko_contact_point_t *v = realloc(cps->v, n * sizeof(*v));
        if (!v)
            return UKKO_ENOMEM;
        cps->v = v;
        *alloc = n;
    }
    ukko_contact_point_t *cp = &cps->v[cps->n];
    cp->pod = strdup(pod ? pod : "");
    if (!cp->pod)
        return UKKO_ENOMEM;
    snprintf(cp->host, sizeof(cp->host), "%s", host);
    cp->port = port;
    cps->n++;
    return 0;
}

/* Sort key of a host: family rank then address bytes. */
static int host_key(const char *host, unsigned char addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, host, addr) == 1)
        return 0;
    if (inet_pton(AF_INET6, host, addr) == 1)
        return 1;
    return 2;
}

static int cmp_point(const void *pa, const void *pb)
{
    const ukko_contact_point_t *a = pa, *b = pb;
    unsigned char ka[16], kb[16];
    int fa = host_key(a->host, ka), fb = host_key(b->host, kb);
    if (fa != fb)
        return fa < fb ? -1 : 1;
    int c = fa == 2 ? strcmp(a->host, b->host) : memcmp(ka, kb, 16);
    if (c)
        return c;
    if (a->port != b->port)
        return a->port < b->port ? -1 : 1;
    return strcmp(a->pod, b->pod);
}

void discovery__points_sort(ukko_contact_points_t *cps)
{
    if (cps->n > 1)
        qsort(cps->v, cps->n, sizeof(cps->v[0]), cmp_point);
}

bool ukko_discovery_points_equal(const ukko_contact_points_t *a, const ukko_contact_points_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].port != b->v[i].port || strcmp(a->v[i].host, b->v[i].host) ||
            strcmp(a->v[i].pod, b->v[i].pod))
            return false;
    return true;
}

int ukko_discovery_points_copy(ukko_contact_points_t *dst, const ukko_contact_points_t *src)
{
    size_t alloc = 0;
    for (size_t i = 0; i < src->n; i++) {
        if (discovery__points_push(dst, &alloc, src->v[i].pod, src->v[i].host, src->v[i].port) <
            0) {
            ukko_discovery_points_destroy(dst);
            return UKKO_ENOMEM;
        }
    }
    return 0;
}

void ukko_discovery_authority(const ukko_contact_point_t *cp, char *out, size_t outlen)
{
    if (strchr(cp->host, ':'))
        snprintf(out, outlen, "[%s]:%d", cp->host, cp->port);
    else
        snprintf(out, outlen, "%s:%d", cp->host, cp->port);
}

int ukko_discovery_points_json(const ukko_contact_points_t *cps, ukko_buf_t *out)
{
    int rc = ukko_buf_puts(out, "{\"contact_points\":[");
    for (size_t i = 0; rc == 0 && i < cps->n; i++) {
        rc = ukko_buf_puts(out, i ? ",{\"pod\":" : "{\"pod\":");
        if (rc == 0)
            rc = ukko_buf_json_str(out, cps->v[i].pod);
        if (rc == 0)
            rc = ukko_buf_puts(out, ",\"host\":");
        if (rc == 0)
            rc = ukko_buf_json_str(out, cps->v[i].host);
        if (rc == 0)
            rc = ukko_buf_printf(out, ",\"port\":%d}", cps->v[i].port);
    }
    if (rc == 0)
        rc = ukko_buf_puts(out, "]}");
    return rc;
}

/* One "host:port" or "[v6]:port"; host may be a name (static lists are
 * written by people for local runs). */
static int parse_item(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return UKKO_EINVAL;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= hostlen)
            return UKKO_EINVAL;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        unsigned char a[16];
        if (inet_pton(AF_INET6, host, a) != 1)
            return UKKO_EINVAL;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon) /* bare IPv6 needs brackets */
            return UKKO_EINVAL;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= hostlen)
            return UKKO_EINVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
        for (size_t i = 0; i < hl; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                return UKKO_EINVAL;
        }
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5)
        return UKKO_EINVAL;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return UKKO_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return UKKO_EINVAL;
    *port = (int)v;
    return 0;
}

int ukko_discovery_static_parse(const ukko_strlist_t *items, ukko_contact_points_t *out,
                                char *why, size_t whylen)
{
    size_t alloc = 0;
    int rc = 0;
    for (size_t i = 0; i < items->n; i++) {
        char host[sizeof(out->v[0].host)];
        int port = 0;
        if (parse_item(items->v[i], host, sizeof(host), &port) < 0) {
            snprintf(why, whylen,
                     "a list of \"host:port\" (IPv6 as \"[addr]:port\", port 1-65535); "
                     "item %zu \"%.80s\" is not one",
                     i, items->v[i]);
            rc = UKKO_EINVAL;
            goto out;
        }
        rc = discovery__points_push(out, &alloc, "", host, port);
        if (rc < 0)
            goto out;
    }
    discovery__points_sort(out);
out:
    if (rc < 0)
        ukko_discovery_points_destroy(out);
    return rc;
}
