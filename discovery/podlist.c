/* podlist.c: a PodList response body -> the contact points the rules of the
 * map keep (ARCHITECTURE.md, Discovery). The body is untrusted and
 * network-sized (10,000 pods are ~20 MB): a pull scanner walks it once,
 * descends only into the fields the rules read and skips the rest, checking
 * the JSON grammar as it goes, with no tree and no allocation per value.
 * cJSON decodes the few strings that carry escapes and the root's small
 * members. No state of its own, but cJSON keeps its parse-error pointer in a
 * global: one thread at a time (the loop thread). Invariant: what cJSON accepts as a PodList
 * gives the same points here (fuzz_podlist checks it against a cJSON tree). */
#include "discovery_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POD_NAME 253 /* a DNS subdomain */
#define MAX_DEPTH 1024   /* nesting inside a skipped value (cJSON allows 1000) */

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

/* Any byte up to ' ' counts as white space, as cJSON counts it. */
static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (unsigned char)*s->p <= ' ')
        s->p++;
}

/* ------------------------------------------------------------ lexing */

/* Moves past one string (s->p at its opening quote); raw and rawlen get its
 * bytes between the quotes, escaped whether any backslash is among them. */
static int lex_string(scan_t *s, const char **raw, size_t *rawlen, bool *escaped)
{
    const char *p = s->p + 1, *e = s->end, *q = NULL;
    bool esc = false;
    for (;;) {
        /* memchr is vectorised: strings are most of a pod list's bytes. The
         * quote found stays the candidate end until an escape consumes it
         * (\"): searching again after every escape would make a string of
         * escapes cost the square of its length, on the loop thread. */
        if (!q || q < p)
            q = p < e ? memchr(p, '"', (size_t)(e - p)) : NULL;
        if (!q) {
            s->p = e;
            return scan_error(s, "string");
        }
        const char *bs = memchr(p, '\\', (size_t)(q - p));
        if (!bs)
            break;
        esc = true;
        if (bs + 1 >= e) {
            s->p = e;
            return scan_error(s, "string");
        }
        char c = bs[1];
        /* A backslash takes the next byte, as cJSON finds a string's end;
         * \u needs four hex digits (JSON's grammar; cJSON alone would read a
         * bad one as U+0000). Surrogate pairing is checked by cJSON where
         * the text is decoded. */
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
            c == 't') {
            p = bs + 2;
        } else if (c == 'u' && e - bs >= 6 && isxdigit((unsigned char)bs[2]) &&
                   isxdigit((unsigned char)bs[3]) && isxdigit((unsigned char)bs[4]) &&
                   isxdigit((unsigned char)bs[5])) {
            p = bs + 6;
        } else {
            s->p = bs;
            return scan_error(s, "bad escape");
        }
    }
    if (raw) {
        *raw = s->p + 1;
        *rawlen = (size_t)(q - (s->p + 1));
        *escaped = esc;
    }
    s->p = q + 1;
    return 0;
}

/* A number as cJSON reads one: '-' or a digit, then digits and '+-.eE', all
 * taken by strtod. *value gets it when value is not NULL. */
static int lex_number(scan_t *s, double *value)
{
    const char *q = s->p;
    while (q < s->end && ((*q >= '0' && *q <= '9') || *q == '-' || *q == '+' || *q == '.' ||
                          *q == 'e' || *q == 'E'))
        q++;
    size_t n = (size_t)(q - s->p);
    if (n == 0)
        return scan_error(s, "number");
    /* strtod needs a terminated copy; numbers past 63 bytes are rare. */
    char small[64], *buf = n < sizeof(small) ? small : malloc(n + 1), *end;
    if (!buf)
        return scan_error(s, "number (out of memory)");
    memcpy(buf, s->p, n);
    buf[n] = '\0';
    double v = strtod(buf, &end);
    bool whole = end == buf + n;
    if (buf != small)
        free(buf);
    if (!whole)
        return scan_error(s, "number");
    if (value)
        *value = v;
    s->p = q;
    return 0;
}

static int lex_literal(scan_t *s)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(s->end - s->p) >= n && !memcmp(s->p, lits[i], n)) {
            s->p += n;
            return 0;
        }
    }
    return scan_error(s, "value expected");
}

/* Moves past one value of any type, checking its grammar; the nesting is
 * kept on an explicit stack, never the C stack. */
static int skip_value(scan_t *s)
{
    char stack[MAX_DEPTH]; /* '{' or '[' of each open container */
    size_t depth = 0;
    for (;;) {
        /* a value */
        skip_ws(s);
        if (s->p >= s->end)
            return scan_error(s, "value");
        char c = *s->p;
        int rc = 0;
        if (c == '{' || c == '[') {
            s->p++;
            skip_ws(s);
            if (s->p < s->end && *s->p == (c == '{' ? '}' : ']')) {
                s->p++;
            } else {
                if (depth == MAX_DEPTH)
                    return scan_error(s, "nested too deep");
                stack[depth++] = c;
                if (c == '{')
                    goto member;
                continue;
            }
        } else if (c == '"') {
            rc = lex_string(s, NULL, NULL, NULL);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            rc = lex_number(s, NULL);
        } else {
            rc = lex_literal(s);
        }
        if (rc < 0)
            return rc;
        /* after a value: close containers, or go on to the next item */
        for (;;) {
            if (depth == 0)
                return 0;
            skip_ws(s);
            if (s->p >= s->end)
                return scan_error(s, "container");
            c = *s->p;
            char open = stack[depth - 1];
            if (c == ',') {
                s->p++;
                if (open == '{')
                    goto member;
                break; /* next array item */
            }
            if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
                s->p++;
                depth--;
                continue;
            }
            return scan_error(s, "',' or a closing bracket expected");
        }
        continue;
    member:
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return scan_error(s, "a member name expected");
        if ((rc = lex_string(s, NULL, NULL, NULL)) < 0)
            return rc;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return scan_error(s, "':' expected");
        s->p++;
    }
}

/* The text of a string token as a C string (cut at an embedded NUL, as cJSON
 * would). Escapes are decoded by cJSON. Returns 0, or 1 when the decoded text
 * does not fit out (not an error: the caller treats it as too long). */
static int decode(scan_t *s, const char *raw, size_t rawlen, bool escaped, char *out,
                  size_t outlen)
{
    if (!escaped) {
        size_t n = strnlen(raw, rawlen);
        if (n >= outlen)
            return 1;
        memcpy(out, raw, n);
        out[n] = '\0';
        return 0;
    }
    cJSON *v = cJSON_ParseWithLength(raw - 1, rawlen + 2);
    if (!cJSON_IsString(v)) {
        cJSON_Delete(v);
        s->p = raw;
        return scan_error(s, "string");
    }
    int rc = strlen(v->valuestring) < outlen ? 0 : 1;
    if (rc == 0)
        snprintf(out, outlen, "%s", v->valuestring);
    cJSON_Delete(v);
    return rc;
}

/* --------------------------------------------------- walking objects */

typedef int (*member_fn)(scan_t *s, const char *key, void *ctx);
typedef int (*item_fn)(scan_t *s, void *ctx);

/* s->p at a value: when it is an object, calls fn for each member with s->p
 * at the member's value (fn must move past it); otherwise skips it and
 * returns 1 ("not an object"). Keys longer than 31 bytes never match what
 * this file looks for, and are passed as "". */
static int walk_object(scan_t *s, member_fn fn, void *ctx)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{') {
        int rc = skip_value(s);
        return rc < 0 ? rc : 1;
    }
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return scan_error(s, "a member name expected");
        const char *raw;
        size_t rawlen;
        bool esc;
        int rc = lex_string(s, &raw, &rawlen, &esc);
        if (rc < 0)
            return rc;
        char key[32];
        const char *after = s->p;
        rc = decode(s, raw, rawlen, esc, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (rc == 1)
            key[0] = '\0';
        s->p = after;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return scan_error(s, "':' expected");
        s->p++;
        skip_ws(s);
        if ((rc = fn(s, key, ctx)) < 0)
            return rc;
        skip_ws(s);
        if (s->p >= s->end)
            return scan_error(s, "object");
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return scan_error(s, "',' or '}' expected");
        s->p++;
    }
}

/* As walk_object, for the items of an array. */
static int walk_array(scan_t *s, item_fn fn, void *ctx)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '[') {
        int rc = skip_value(s);
        return rc < 0 ? rc : 1;
    }
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        int rc = fn(s, ctx);
        if (rc < 0)
            return rc;
        skip_ws(s);
        if (s->p >= s->end)
            return scan_error(s, "array");
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return scan_error(s, "',' or ']' expected");
        s->p++;
    }
}

/* A string value into out: 0 stored, 1 not a string or too long (skipped). */
static int read_string(scan_t *s, char *out, size_t outlen)
{
    if (s->p >= s->end || *s->p != '"') {
        int rc = skip_value(s);
        return rc < 0 ? rc : 1;
    }
    const char *raw;
    size_t rawlen;
    bool esc;
    int rc = lex_string(s, &raw, &rawlen, &esc);
    if (rc < 0)
        return rc;
    const char *after = s->p;
    rc = decode(s, raw, rawlen, esc, out, outlen);
    if (rc >= 0)
        s->p = after;
    return rc;
}

/* -------------------------------------------------------- one pod */

/* What the rules read of one pod. Only the first of duplicated keys counts
 * (as with cJSON_GetObjectItem). */
typedef struct pod {
    const ukko_podlist_filter_t *f;
    bool seen_meta, seen_spec, seen_status;
    bool meta_ok;     /* metadata is an object */
    int name;         /* 0 absent, 1 ok, 2 not a string or too long */
    bool seen_name, seen_del, deleting;
    char name_buf[MAX_POD_NAME + 1];
    bool seen_phase, running;
    bool seen_ip;
    int ip; /* 0 absent or not a string, 1 a string */
    char ip_buf[64];
    bool ip_too_long;
    bool seen_cs, container_up;
    bool seen_containers;
    int port;
    bool seen_rv, seen_code;
    char rv[64]; /* metadata.resourceVersion ("" absent or too long) */
    double code; /* a Status's code (watch ERROR events) */
} pod_t;

/* Scratch of the nested walks below. */
typedef struct sub {
    pod_t *pod;
    bool seen_a, seen_b;
    char name[64];
    int has_name; /* 1: a string that fit */
    bool matched, flag;
    double number;
    bool has_number;
} sub_t;

static int on_meta(scan_t *s, const char *key, void *ctx)
{
    pod_t *p = ctx;
    if (!strcmp(key, "name") && !p->seen_name) {
        p->seen_name = true;
        int rc = read_string(s, p->name_buf, sizeof(p->name_buf));
        if (rc < 0)
            return rc;
        p->name = rc == 0 ? 1 : 2;
        return 0;
    }
    if (!strcmp(key, "resourceVersion") && !p->seen_rv) {
        p->seen_rv = true;
        int rc = read_string(s, p->rv, sizeof(p->rv));
        if (rc < 0)
            return rc;
        if (rc == 1)
            p->rv[0] = '\0';
        return 0;
    }
    if (!strcmp(key, "deletionTimestamp") && !p->seen_del) {
        p->seen_del = true;
        p->deleting = !(s->end - s->p >= 4 && !memcmp(s->p, "null", 4));
    }
    return skip_value(s);
}

static int on_state(scan_t *s, const char *key, void *ctx)
{
    sub_t *st = ctx;
    if (!strcmp(key, "waiting") && !st->seen_a) {
        st->seen_a = true;
        st->flag = !(s->end - s->p >= 4 && !memcmp(s->p, "null", 4)); /* waiting */
    }
    return skip_value(s);
}

static int on_cs_member(scan_t *s, const char *key, void *ctx)
{
    sub_t *cs = ctx;
    if (!strcmp(key, "name") && !cs->has_name) {
        int rc = read_string(s, cs->name, sizeof(cs->name));
        if (rc < 0)
            return rc;
        cs->has_name = rc == 0 ? 1 : 2;
        return 0;
    }
    if (!strcmp(key, "state") && !cs->seen_b) {
        cs->seen_b = true;
        sub_t state = {0};
        int rc = walk_object(s, on_state, &state);
        if (rc < 0)
            return rc;
        cs->flag = state.flag; /* not an object: no waiting in it */
        return 0;
    }
    return skip_value(s);
}

static int on_container_status(scan_t *s, void *ctx)
{
    pod_t *p = ctx;
    sub_t cs = {0};
    int rc = walk_object(s, on_cs_member, &cs);
    if (rc < 0)
        return rc;
    if (rc == 0 && cs.has_name == 1 && !strcmp(cs.name, p->f->container_name) && !cs.flag)
        p->container_up = true;
    return 0;
}

static int on_port_member(scan_t *s, const char *key, void *ctx)
{
    sub_t *pt = ctx;
    if (!strcmp(key, "name") && !pt->has_name) {
        int rc = read_string(s, pt->name, sizeof(pt->name));
        if (rc < 0)
            return rc;
        pt->has_name = rc == 0 ? 1 : 2;
        return 0;
    }
    if (!strcmp(key, "containerPort") && !pt->seen_a) {
        pt->seen_a = true;
        if (s->p < s->end && (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))) {
            pt->has_number = true;
            return lex_number(s, &pt->number);
        }
    }
    return skip_value(s);
}

static int on_port(scan_t *s, void *ctx)
{
    pod_t *p = ctx;
    sub_t pt = {0};
    int rc = walk_object(s, on_port_member, &pt);
    if (rc < 0)
        return rc;
    double v = pt.number;
    if (rc == 0 && !p->port && pt.has_name == 1 && !strcmp(pt.name, p->f->port_name) &&
        pt.has_number && v >= 1 && v <= 65535 && v == (double)(int)v)
        p->port = (int)v;
    return 0;
}

static int on_container_member(scan_t *s, const char *key, void *ctx)
{
    sub_t *c = ctx;
    if (!strcmp(key, "ports") && !c->seen_a) {
        c->seen_a = true;
        int rc = walk_array(s, on_port, c->pod);
        return rc < 0 ? rc : 0;
    }
    return skip_value(s);
}

static int on_container(scan_t *s, void *ctx)
{
    sub_t c = {.pod = ctx};
    int rc = walk_object(s, on_container_member, &c);
    return rc < 0 ? rc : 0;
}

static int on_spec(scan_t *s, const char *key, void *ctx)
{
    pod_t *p = ctx;
    if (!strcmp(key, "containers") && !p->seen_containers && p->f->port_name) {
        p->seen_containers = true;
        int rc = walk_array(s, on_container, p);
        return rc < 0 ? rc : 0;
    }
    return skip_value(s);
}

static int on_status(scan_t *s, const char *key, void *ctx)
{
    pod_t *p = ctx;
    if (!strcmp(key, "phase") && !p->seen_phase) {
        p->seen_phase = true;
        char phase[16];
        int rc = read_string(s, phase, sizeof(phase));
        if (rc < 0)
            return rc;
        p->running = rc == 0 && !strcmp(phase, "Running");
        return 0;
    }
    if (!strcmp(key, "podIP") && !p->seen_ip) {
        p->seen_ip = true;
        int rc = read_string(s, p->ip_buf, sizeof(p->ip_buf));
        if (rc < 0)
            return rc;
        /* A string too long for any address is "not an IP", not "no IP". */
        p->ip_too_long = rc == 1 && s->p[-1] == '"';
        p->ip = rc == 0 ? 1 : 0;
        return 0;
    }
    if (!strcmp(key, "containerStatuses") && !p->seen_cs && p->f->container_name) {
        p->seen_cs = true;
        int rc = walk_array(s, on_container_status, p);
        return rc < 0 ? rc : 0;
    }
    return skip_value(s);
}

static int on_pod(scan_t *s, const char *key, void *ctx)
{
    pod_t *p = ctx;
    int rc;
    if (!strcmp(key, "metadata") && !p->seen_meta) {
        p->seen_meta = true;
        rc = walk_object(s, on_meta, p);
        p->meta_ok = rc == 0;
        return rc < 0 ? rc : 0;
    }
    if (!strcmp(key, "status") && !p->seen_status) {
        p->seen_status = true;
        rc = walk_object(s, on_status, p);
        return rc < 0 ? rc : 0;
    }
    if (!strcmp(key, "spec") && !p->seen_spec) {
        p->seen_spec = true;
        rc = walk_object(s, on_spec, p);
        return rc < 0 ? rc : 0;
    }
    if (!strcmp(key, "code") && !p->seen_code) {
        p->seen_code = true; /* a Status in a watch's ERROR event; pods have none */
        if (s->p < s->end && (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')))
            return lex_number(s, &p->code);
    }
    return skip_value(s);
}

static bool valid_ip(const char *ip)
{
    unsigned char a[16];
    return strlen(ip) < sizeof(((ukko_contact_point_t *)0)->host) &&
           (inet_pton(AF_INET, ip, a) == 1 || inet_pton(AF_INET6, ip, a) == 1);
}

typedef struct items {
    const ukko_podlist_filter_t *f;
    ukko_contact_points_t *out;
    size_t *alloc;
    ukko_podlist_stats_t *st;
} items_t;

/* Whether a walked pod is a contact point by the rules of the map; when
 * not, counts why in st. *port gets its port when it is. */
static bool keep(const pod_t *p, ukko_podlist_stats_t *st, int *port)
{
    st->pods++;
    /* A name that decodes to "" (raw or escaped NUL bytes) names no pod. */
    if (!p->meta_ok || p->name != 1 || !p->name_buf[0] || strlen(p->name_buf) > MAX_POD_NAME)
        st->bad++;
    else if (p->deleting)
        st->terminating++;
    else if (!p->running)
        st->not_running++;
    else if (p->f->container_name && !p->container_up)
        st->waiting++;
    else if (p->ip_too_long || (p->ip == 1 && p->ip_buf[0] && !valid_ip(p->ip_buf)))
        st->bad++;
    else if (p->ip != 1 || !p->ip_buf[0])
        st->no_ip++;
    else {
        *port = p->port;
        if (!*port) {
            *port = p->f->default_port;
            st->default_port++;
        }
        st->kept++;
        return true;
    }
    return false;
}

/* One item of the list: kept (pushed), or counted under why it was not. */
static int on_item(scan_t *s, void *ctx)
{
    items_t *it = ctx;
    ukko_podlist_stats_t *st = it->st;
    pod_t p;
    memset(&p, 0, sizeof(p));
    p.f = it->f;
    int rc = walk_object(s, on_pod, &p);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        st->pods++;
        st->bad++;
        return 0;
    }
    int port = 0;
    if (keep(&p, st, &port) &&
        discovery__points_push(it->out, it->alloc, p.name_buf, p.ip_buf, port) < 0) {
        snprintf(s->why, s->whylen, "out of memory");
        return UKKO_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------- the list */

typedef struct root {
    items_t items;
    bool seen_items, seen_kind, seen_meta, seen_rv;
    bool bad_kind, bad_items;
} root_t;

static int on_list_meta(scan_t *s, const char *key, void *ctx)
{
    root_t *r = ctx;
    ukko_podlist_stats_t *st = r->items.st;
    if (!strcmp(key, "resourceVersion") && !r->seen_rv) {
        /* The first one counts, even when it is not a usable string. */
        r->seen_rv = true;
        int rc = read_string(s, st->resource_version, sizeof(st->resource_version));
        if (rc == 1)
            st->resource_version[0] = '\0';
        return rc < 0 ? rc : 0;
    }
    return skip_value(s);
}

static int on_root(scan_t *s, const char *key, void *ctx)
{
    root_t *r = ctx;
    if (!strcmp(key, "metadata") && !r->seen_meta) {
        r->seen_meta = true;
        int rc = walk_object(s, on_list_meta, r);
        return rc < 0 ? rc : 0;
    }
    if (!strcmp(key, "items") && !r->seen_items) {
        r->seen_items = true;
        if (s->end - s->p >= 4 && !memcmp(s->p, "null", 4))
            return skip_value(s);
        int rc = walk_array(s, on_item, &r->items);
        if (rc == 1) {
            snprintf(s->why, s->whylen, "\"items\" is not a list (expected a PodList)");
            r->bad_items = true;
            return UKKO_EPROTO;
        }
        return rc;
    }
    if (!strcmp(key, "kind") && !r->seen_kind) {
        r->seen_kind = true;
        char kind[48];
        int rc = read_string(s, kind, sizeof(kind));
        if (rc < 0)
            return rc;
        if (rc == 1 || strcmp(kind, "PodList")) {
            snprintf(s->why, s->whylen, "the response is a %s, not a PodList",
                     rc == 1 ? "document with an odd \"kind\"" : kind);
            r->bad_kind = true;
            return UKKO_EPROTO;
        }
        return 0;
    }
    return skip_value(s);
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
    root_t r = {.items = {f, out, &alloc, st}};
    int rc = 0;
    skip_ws(&s);
    if (s.p >= s.end) {
        snprintf(why, whylen, "the response body is empty (expected a PodList)");
        rc = UKKO_EPROTO;
        goto out;
    }
    rc = walk_object(&s, on_root, &r);
    if (rc == 1) {
        snprintf(why, whylen, "the response is not a JSON object (expected a PodList)");
        rc = UKKO_EPROTO;
    }
    if (rc < 0)
        goto out;
    skip_ws(&s);
    if (s.p < s.end) {
        snprintf(why, whylen, "unexpected bytes after the JSON value at byte %zu",
                 (size_t)(s.p - json));
        rc = UKKO_EPROTO;
        goto out;
    }
    if (!r.seen_items) {
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

/* ------------------------------------------------- one watch event */

typedef struct event {
    pod_t pod;
    bool seen_type, seen_object;
    int object; /* 0 absent, 1 an object, 2 something else */
    char type[16];
    int type_rc; /* read_string's result for "type" */
} event_t;

static int on_event(scan_t *s, const char *key, void *ctx)
{
    event_t *e = ctx;
    if (!strcmp(key, "type") && !e->seen_type) {
        e->seen_type = true;
        int rc = read_string(s, e->type, sizeof(e->type));
        e->type_rc = rc;
        return rc < 0 ? rc : 0;
    }
    if (!strcmp(key, "object") && !e->seen_object) {
        e->seen_object = true;
        int rc = walk_object(s, on_pod, &e->pod);
        if (rc < 0)
            return rc;
        e->object = rc == 0 ? 1 : 2;
        return 0;
    }
    return skip_value(s);
}

int ukko_discovery_watch_event_parse(const char *json, size_t len, const ukko_podlist_filter_t *f,
                                     ukko_watch_event_t *ev, char *why, size_t whylen)
{
    char whybuf[16];
    if (!why || !whylen) {
        why = whybuf;
        whylen = sizeof(whybuf);
    }
    memset(ev, 0, sizeof(*ev));
    why[0] = '\0';
    scan_t s = {.p = json, .start = json, .end = json + len, .why = why, .whylen = whylen};
    event_t e;
    memset(&e, 0, sizeof(e));
    e.pod.f = f;
    skip_ws(&s);
    int rc = s.p < s.end ? walk_object(&s, on_event, &e) : 1;
    if (rc < 0)
        return rc;
    skip_ws(&s);
    if (rc == 1 || s.p < s.end) {
        snprintf(why, whylen, rc == 1 ? "a watch event is a JSON object"
                                      : "unexpected bytes after the watch event");
        return UKKO_EPROTO;
    }
    if (!e.seen_type || e.type_rc != 0 || e.object != 1) {
        snprintf(why, whylen, "a watch event needs a string \"type\" and an object \"object\"");
        return UKKO_EPROTO;
    }
    static const char *const types[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    ev->type = UKKO_WATCH_UNKNOWN;
    for (int i = 0; i < 5; i++)
        if (!strcmp(e.type, types[i]))
            ev->type = i;
    const pod_t *p = &e.pod;
    if (p->meta_ok && p->name == 1 && strlen(p->name_buf) < sizeof(ev->pod))
        snprintf(ev->pod, sizeof(ev->pod), "%s", p->name_buf);
    if (p->meta_ok)
        snprintf(ev->resource_version, sizeof(ev->resource_version), "%s", p->rv);
    if (p->seen_code && p->code >= 0 && p->code < 1000)
        ev->code = (int)p->code;
    if (ev->type == UKKO_WATCH_ADDED || ev->type == UKKO_WATCH_MODIFIED) {
        ukko_podlist_stats_t st;
        memset(&st, 0, sizeof(st));
        int port = 0;
        if (keep(p, &st, &port)) {
            ev->kept = true;
            snprintf(ev->host, sizeof(ev->host), "%s", p->ip_buf);
            ev->port = port;
        }
    }
    return 0;
}
