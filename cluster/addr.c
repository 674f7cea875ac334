/* addr.c: cluster endpoints: parsing "host:port", formatting, ordering and
 * the sockaddr conversions. Pure functions, any thread. IPv4 is held as an
 * IPv4-mapped IPv6 address so that every endpoint has one 18-byte form. */
#include "cluster_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4(const cluster__addr_t *a)
{
    return memcmp(a->ip, v4_prefix, 12) == 0;
}

int cluster__addr_parse(const char *s, uint16_t default_port, cluster__addr_t *a)
{
    char host[64];
    const char *port = NULL;
    memset(a, 0, sizeof(*a));
    if (!s || !*s)
        return UKKO_EINVAL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof(host))
            return UKKO_EINVAL;
        snprintf(host, sizeof(host), "%.*s", (int)(end - s - 1), s + 1);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1])
            return UKKO_EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        /* More than one colon without brackets: a bare IPv6 address. */
        if (colon && strchr(s, ':') != colon)
            colon = NULL;
        size_t n = colon ? (size_t)(colon - s) : strlen(s);
        if (n >= sizeof(host))
            return UKKO_EINVAL;
        snprintf(host, sizeof(host), "%.*s", (int)n, s);
        if (colon)
            port = colon + 1;
    }
    if (port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (!*port || *end || p < 1 || p > 65535)
            return UKKO_EINVAL;
        a->port = (uint16_t)p;
    } else {
        a->port = default_port;
    }
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        memcpy(a->ip, v4_prefix, 12);
        memcpy(a->ip + 12, &v4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, a->ip) == 1)
        return 0;
    return UKKO_EINVAL;
}

void cluster__addr_host(const cluster__addr_t *a, char *out, size_t outlen)
{
    char buf[INET6_ADDRSTRLEN];
    if (is_v4(a))
        inet_ntop(AF_INET, a->ip + 12, buf, sizeof(buf));
    else
        inet_ntop(AF_INET6, a->ip, buf, sizeof(buf));
    snprintf(out, outlen, "%s", buf);
}

void cluster__addr_format(const cluster__addr_t *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    cluster__addr_host(a, host, sizeof(host));
    if (is_v4(a))
        snprintf(out, outlen, "%s:%u", host, a->port);
    else
        snprintf(out, outlen, "[%s]:%u", host, a->port);
}

bool cluster__addr_eq(const cluster__addr_t *a, const cluster__addr_t *b)
{
    return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

int cluster__addr_cmp(const cluster__addr_t *a, const cluster__addr_t *b)
{
    int c = memcmp(a->ip, b->ip, 16);
    if (c)
        return c;
    return (int)a->port - (int)b->port;
}

size_t cluster__addr_to_sockaddr(const cluster__addr_t *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (is_v4(a)) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        memcpy(&sin->sin_addr, a->ip + 12, 4);
        return sizeof(*sin);
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(a->port);
    memcpy(&sin6->sin6_addr, a->ip, 16);
    return sizeof(*sin6);
}

void cluster__addr_from_sockaddr(const struct sockaddr_storage *ss, cluster__addr_t *a)
{
    memset(a, 0, sizeof(*a));
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        memcpy(a->ip, v4_prefix, 12);
        memcpy(a->ip + 12, &sin->sin_addr, 4);
        a->port = ntohs(sin->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        memcpy(a->ip, &sin6->sin6_addr, 16);
        a->port = ntohs(sin6->sin6_port);
    }
}
