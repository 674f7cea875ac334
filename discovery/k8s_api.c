/* k8s_api.c: one LIST of pods from the Kubernetes API over TLS, with the
 * service-account token, turned into contact points or into a failure whose
 * message names the cause and the way out. Loop thread only.
 * Invariants: the server is always verified against api-ca-path; the token
 * is never logged and is wiped from memory when replaced; a body is never
 * held beyond max-response-bytes. */
#include "discovery_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOKEN_BYTES 65536
#define MAX_ERROR_BODY 65536 /* only this much of an error body is parsed */

struct discovery__k8s {
    const ukko_discovery_config_t *dc;
    discovery__http_t *http;
    ukko_podlist_filter_t filter;
    char base[600]; /* https://host:port */
    char *url;
    char namespace_[254];
    char selector[512];
    CURL *easy;
    struct curl_slist *headers; /* holds the token: wiped before freeing */
    char *token;
    struct stat token_st; /* of the file the token was read from */
    bool have_token_st;
    ukko_buf_t body;
    bool too_large;
    bool in_flight;
    bool retried;
    int64_t started_ms;
    char errbuf[CURL_ERROR_SIZE];
    discovery__k8s_done_fn done;
    void *ud;
};

static void wipe(char *s)
{
    if (s) {
        volatile char *p = s;
        while (*p)
            *p++ = 0;
    }
}

static void drop_headers(discovery__k8s_t *k)
{
    for (struct curl_slist *l = k->headers; l; l = l->next)
        wipe(l->data);
    curl_slist_free_all(k->headers);
    k->headers = NULL;
}

/* Reads a small file whole; trims trailing whitespace. NULL with errno-ish rc. */
static char *read_small(const char *path, size_t cap, int *rc)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = -errno;
        return NULL;
    }
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        *rc = UKKO_ENOMEM;
        return NULL;
    }
    size_t n = fread(buf, 1, cap + 1, f);
    bool err = ferror(f);
    fclose(f);
    if (err || n > cap) {
        wipe(buf);
        free(buf);
        *rc = err ? UKKO_EINVAL : UKKO_E2BIG;
        return NULL;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    *rc = 0;
    return buf;
}

/* (Re)reads the token when forced or when its file changed (kubelet rotates
 * projected tokens by swapping a symlink: the inode changes). Sets *changed
 * when the token text differs from the one held. */
static int load_token(discovery__k8s_t *k, bool force, bool *changed, char *why, size_t whylen)
{
    const char *path = k->dc->k8s.api_token_path;
    struct stat st;
    *changed = false;
    if (stat(path, &st) < 0) {
        int e = errno;
        snprintf(why, whylen,
                 "cannot read the service-account token %s: %s (set "
                 "discovery.kubernetes-api.api-token-path, or mount the token: "
                 "automountServiceAccountToken must not be false)",
                 path, strerror(e));
        return -e;
    }
    if (!force && k->token && k->have_token_st && st.st_ino == k->token_st.st_ino &&
        st.st_dev == k->token_st.st_dev && st.st_size == k->token_st.st_size &&
        st.st_mtim.tv_sec == k->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == k->token_st.st_mtim.tv_nsec)
        return 0;
    int rc = 0;
    char *tok = read_small(path, MAX_TOKEN_BYTES, &rc);
    if (!tok || !*tok) {
        snprintf(why, whylen, "cannot read the service-account token %s: %s", path,
                 !tok ? (rc == UKKO_E2BIG ? "larger than 64 KiB" : ukko_strerror(rc))
                      : "the file is empty");
        free(tok);
        return tok ? UKKO_EINVAL : rc;
    }
    for (const char *p = tok; *p; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            snprintf(why, whylen,
                     "the service-account token %s holds a character a bearer token cannot "
                     "have (a space, a line break or a control byte inside it)",
                     path);
            wipe(tok);
            free(tok);
            return UKKO_EINVAL;
        }
    }
    *changed = !k->token || strcmp(k->token, tok) != 0;
    if (k->token) {
        wipe(k->token);
        free(k->token);
    }
    k->token = tok;
    k->token_st = st;
    k->have_token_st = true;
    if (*changed) {
        drop_headers(k);
        size_t n = strlen(tok) + 32;
        char *h = malloc(n);
        if (!h)
            return UKKO_ENOMEM;
        snprintf(h, n, "Authorization: Bearer %s", tok);
        struct curl_slist *l = curl_slist_append(NULL, h);
        wipe(h);
        free(h);
        if (l)
            l = curl_slist_append(l, "Accept: application/json");
        if (!l)
            return UKKO_ENOMEM;
        k->headers = l;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    discovery__k8s_t *k = ud;
    if (ukko_buf_append(&k->body, p, size * n) < 0) {
        k->too_large = true;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    return size * n;
}

/* The "message" of a Status body, cleaned for a log line ("" if none). */
static void status_message(const ukko_buf_t *body, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!body->len || body->len > MAX_ERROR_BODY)
        return;
    cJSON *root = cJSON_ParseWithLength(body->data, body->len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (cJSON_IsString(m)) {
        size_t j = 0;
        for (const char *p = m->valuestring; *p && j + 1 < outlen && j < 300; p++)
            out[j++] = ((unsigned char)*p < 0x20) ? ' ' : *p;
        out[j] = '\0';
    }
    cJSON_Delete(root);
}

static void finish(discovery__k8s_t *k, ukko_discovery_result_t *res, ukko_contact_points_t *points)
{
    k->in_flight = false;
    res->took_ms = ukko_now_ms() - k->started_ms;
    ukko_buf_destroy(&k->body);
    ukko_buf_init(&k->body, (size_t)k->dc->k8s.max_response_bytes);
    k->done(k->ud, res, points);
}

static void fail(discovery__k8s_t *k, ukko_discovery_failure_t failure, int status, int http,
                 const char *fmt, ...) UKKO_PRINTF(5, 6);
static void fail(discovery__k8s_t *k, ukko_discovery_failure_t failure, int status, int http,
                 const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ukko_contact_points_t none = {0};
    ukko_discovery_result_t res = {.status = status,
                                   .failure = failure,
                                   .http_status = http,
                                   .error = msg,
                                   .points = &none};
    finish(k, &res, &none);
}

static int start(discovery__k8s_t *k);

/* A response other than 200: the message names the cause and the way out. */
static void on_http_error(discovery__k8s_t *k, long code)
{
    char server[320], srv[340] = "";
    status_message(&k->body, server, sizeof(server));
    if (*server)
        snprintf(srv, sizeof(srv), " (the server said: %s)", server);
    const char *url = k->url;
    int http = (int)code;
    if (code == 401) {
        char why[512] = "";
        /* A second 401 comes after a retry with a changed token. */
        const char *reread = k->retried ? "re-read and retried with the new token: still rejected"
                                        : "re-read: unchanged";
        if (!k->retried) {
            /* The token may have been rotated under us: read it again and,
             * if it changed, try once more before calling it a failure. */
            bool changed = false;
            k->retried = true;
            int rc = load_token(k, true, &changed, why, sizeof(why));
            if (rc < 0)
                reread = why; /* say why the re-read failed, not "unchanged" */
            if (rc == 0 && changed) {
                ukko_log(UKKO_LOG_INFO, DISCOVERY_LOG,
                         "GET %s returned 401 Unauthorized: the token file %s has changed since "
                         "it was read; retrying once with the new token",
                         url, k->dc->k8s.api_token_path);
                ukko_buf_reset(&k->body);
                if (start(k) == 0)
                    return;
            }
        }
        fail(k, UKKO_DISCOVERY_FAIL_UNAUTHORIZED, UKKO_EPROTO, http,
             "GET %s returned 401 Unauthorized: the API server rejected the service-account "
             "token in %s (%s): check that the file holds a current token of an existing "
             "ServiceAccount (discovery.kubernetes-api.api-token-path)%s",
             url, k->dc->k8s.api_token_path, reread, srv);
    } else if (code == 403) {
        fail(k, UKKO_DISCOVERY_FAIL_FORBIDDEN, UKKO_EPROTO, http,
             "GET %s returned 403 Forbidden: the service account needs a Role with \"list\" on "
             "\"pods\" in namespace \"%s\", bound to it by a RoleBinding (k8s/base/rbac.yaml: "
             "Role ukko-pod-reader; docs/discovery.md, RBAC)%s",
             url, k->namespace_, srv);
    } else if (code == 404) {
        fail(k, UKKO_DISCOVERY_FAIL_NOT_FOUND, UKKO_ENOENT, http,
             "GET %s returned 404 Not Found: is the namespace \"%s\" right (from %s)? Set "
             "discovery.kubernetes-api.pod-namespace to the pods' namespace%s",
             url, k->namespace_,
             k->dc->k8s.pod_namespace ? "discovery.kubernetes-api.pod-namespace"
                                      : k->dc->k8s.pod_namespace_path,
             srv);
    } else if (code >= 500 || code == 429) {
        fail(k, UKKO_DISCOVERY_FAIL_SERVER, UKKO_EPROTO, http,
             "GET %s returned %ld: the API server %s (a refreshing discovery retries with "
             "backoff)%s",
             url, code, code == 429 ? "asks for fewer requests" : "failed to answer", srv);
    } else {
        fail(k, UKKO_DISCOVERY_FAIL_HTTP, UKKO_EPROTO, http,
             "GET %s returned HTTP %ld, not 200 with a PodList: is the label selector \"%s\" "
             "valid, and is this a Kubernetes API server?%s",
             url, code, k->selector, srv);
    }
}

static void on_body_done(discovery__k8s_t *k)
{
    ukko_contact_points_t points = {0};
    ukko_podlist_stats_t stats;
    char why[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = ukko_discovery_podlist_parse(k->body.data ? k->body.data : "", k->body.len,
                                          &k->filter, &points, &stats, why, sizeof(why));
    clock_gettime(CLOCK_MONOTONIC, &b);
    int64_t parse_us = (int64_t)(b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
    if (rc < 0) {
        fail(k, rc == UKKO_ENOMEM ? UKKO_DISCOVERY_FAIL_TOO_LARGE : UKKO_DISCOVERY_FAIL_MALFORMED,
             rc, 200,
             "GET %s returned 200 but not a pod list: %s (%zu bytes); is a proxy in the way, or "
             "did the connection break?",
             k->url, why, k->body.len);
        return;
    }
    ukko_discovery_result_t res = {.status = 0,
                                   .failure = UKKO_DISCOVERY_OK,
                                   .http_status = 200,
                                   .points = &points,
                                   .stats = &stats,
                                   .parse_us = parse_us};
    finish(k, &res, &points);
    ukko_discovery_points_destroy(&points);
}

static void on_done(CURL *easy, CURLcode result, void *ud)
{
    discovery__k8s_t *k = ud;
    const char *url = k->url;
    char d[32];
    ukko_format_duration(k->dc->k8s.resolve_timeout_ms, d, sizeof(d));
    const char *detail = k->errbuf[0] ? k->errbuf : curl_easy_strerror(result);
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    switch (result) {
    case CURLE_OK:
        if (code == 200)
            on_body_done(k);
        else
            on_http_error(k, code);
        return;
    case CURLE_OPERATION_TIMEDOUT:
        fail(k, UKKO_DISCOVERY_FAIL_TIMEOUT, UKKO_ETIMEDOUT, (int)code,
             "GET %s: no complete answer within discovery.kubernetes-api.resolve-timeout (%s): "
             "the API server is slow or unreachable (%s)",
             url, d, detail);
        return;
    case CURLE_PEER_FAILED_VERIFICATION:
        fail(k, UKKO_DISCOVERY_FAIL_TLS, UKKO_EPROTO, 0,
             "GET %s: the API server's certificate could not be verified with the CA in %s (%s): "
             "wrong CA file? check discovery.kubernetes-api.api-ca-path (verification is never "
             "turned off)",
             url, k->dc->k8s.api_ca_path, detail);
        return;
    case CURLE_SSL_CACERT_BADFILE:
        fail(k, UKKO_DISCOVERY_FAIL_CONFIG, UKKO_EINVAL, 0,
             "GET %s: the CA file %s could not be used (%s): it must hold PEM certificates "
             "(discovery.kubernetes-api.api-ca-path)",
             url, k->dc->k8s.api_ca_path, detail);
        return;
    case CURLE_SSL_CONNECT_ERROR:
        fail(k, UKKO_DISCOVERY_FAIL_TLS, UKKO_EPROTO, 0,
             "GET %s: the TLS handshake with the API server failed (%s): is it an HTTPS port, "
             "and does %s hold the CA that signed its certificate?",
             url, detail, k->dc->k8s.api_ca_path);
        return;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (k->too_large || result == CURLE_FILESIZE_EXCEEDED) {
            fail(k, UKKO_DISCOVERY_FAIL_TOO_LARGE, UKKO_E2BIG, (int)code,
                 "GET %s: the pod list is larger than "
                 "discovery.kubernetes-api.max-response-bytes (%lld bytes): narrow "
                 "pod-label-selector or raise the limit",
                 url, (long long)k->dc->k8s.max_response_bytes);
            return;
        }
        break;
    case CURLE_PARTIAL_FILE:
        fail(k, UKKO_DISCOVERY_FAIL_MALFORMED, UKKO_EPROTO, (int)code,
             "GET %s: the response was cut short after %zu bytes (%s): the connection to the API "
             "server broke",
             url, k->body.len, detail);
        return;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        fail(k, UKKO_DISCOVERY_FAIL_CONNECT, UKKO_EPROTO, (int)code,
             "GET %s: the connection to the API server closed without a whole answer (%s): "
             "is something between this pod and the API server cutting connections?",
             url, detail);
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        fail(k, UKKO_DISCOVERY_FAIL_CONNECT, UKKO_EAGAIN, 0,
             "GET %s: cannot connect to the API server (%s): check KUBERNETES_SERVICE_HOST and "
             "KUBERNETES_SERVICE_PORT (or discovery.kubernetes-api.api-server) and network "
             "policies",
             url, detail);
        return;
    default:
        break;
    }
    fail(k, UKKO_DISCOVERY_FAIL_CONNECT, UKKO_EPROTO, (int)code,
         "GET %s failed: %s (libcurl error %d)", url, detail, (int)result);
}

static int start(discovery__k8s_t *k)
{
    CURL *e = k->easy;
    k->errbuf[0] = '\0';
    k->too_large = false;
    curl_easy_setopt(e, CURLOPT_URL, k->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->headers);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    int rc = discovery__http_add(k->http, e, on_done, k);
    if (rc == 0)
        k->in_flight = true;
    return rc;
}

/* Sets every option that never changes between lookups. */
static int setup_easy(discovery__k8s_t *k)
{
    CURL *e = curl_easy_init();
    if (!e)
        return UKKO_ENOMEM;
    k->easy = e;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CAINFO, k->dc->k8s.api_ca_path);
    /* The distribution's CA path must not widen trust beyond api-ca-path. */
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)k->dc->k8s.resolve_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)k->dc->k8s.resolve_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)k->dc->k8s.max_response_bytes);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip: big lists shrink 10x */
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ukko/" UKKO_VERSION " (discovery)");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, k->errbuf);
    return 0;
}

/* https://host:port from the config or, as in a pod, from the environment. */
static int base_url(const ukko_discovery_config_t *dc, char *out, size_t outlen)
{
    if (dc->k8s.api_server) {
        size_t n = strlen(dc->k8s.api_server);
        while (n && dc->k8s.api_server[n - 1] == '/')
            n--;
        snprintf(out, outlen, "%.*s", (int)n, dc->k8s.api_server);
        return 0;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host) {
        ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG,
                 "KUBERNETES_SERVICE_HOST is not set: not running in a pod? Set "
                 "discovery.kubernetes-api.api-server, or discovery.method \"static\" for local "
                 "runs");
        return UKKO_EINVAL;
    }
    if (!port || !*port)
        port = "443";
    bool v6 = strchr(host, ':') != NULL && host[0] != '[';
    snprintf(out, outlen, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    return 0;
}

static int find_namespace(discovery__k8s_t *k)
{
    const ukko_discovery_config_t *dc = k->dc;
    if (dc->k8s.pod_namespace) {
        snprintf(k->namespace_, sizeof(k->namespace_), "%s", dc->k8s.pod_namespace);
        return 0;
    }
    int rc = 0;
    char *ns = read_small(dc->k8s.pod_namespace_path, sizeof(k->namespace_) - 1, &rc);
    if (!ns || !*ns) {
        /* As Pekko does: outside a pod the namespace file is absent. */
        ukko_log(UKKO_LOG_WARN, DISCOVERY_LOG,
                 "cannot read the namespace from %s (%s): listing pods in namespace \"default\" "
                 "(set discovery.kubernetes-api.pod-namespace to choose)",
                 dc->k8s.pod_namespace_path, ns ? "empty file" : ukko_strerror(rc));
        snprintf(k->namespace_, sizeof(k->namespace_), "default");
    } else {
        snprintf(k->namespace_, sizeof(k->namespace_), "%s", ns);
    }
    free(ns);
    return 0;
}

discovery__k8s_t *discovery__k8s_new(const ukko_discovery_config_t *dc, discovery__http_t *http,
                                     int default_port)
{
    discovery__k8s_t *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->dc = dc;
    k->http = http;
    ukko_buf_init(&k->body, (size_t)dc->k8s.max_response_bytes);
    k->filter.port_name = dc->k8s.pod_port_name;
    k->filter.container_name = dc->k8s.container_name;
    k->filter.default_port = default_port;
    char *base = k->base;
    char *ens = NULL, *esel = NULL;
    int ok = base_url(dc, base, sizeof(k->base)) == 0 && find_namespace(k) == 0 &&
             setup_easy(k) == 0;
    if (ok) {
        const char *sel = dc->k8s.pod_label_selector ? dc->k8s.pod_label_selector : "app=%s";
        const char *pct = strstr(sel, "%s");
        if (pct)
            snprintf(k->selector, sizeof(k->selector), "%.*s%s%s", (int)(pct - sel), sel,
                     dc->k8s.service_name ? dc->k8s.service_name : "", pct + 2);
        else
            snprintf(k->selector, sizeof(k->selector), "%s", sel);
        ens = curl_easy_escape(k->easy, k->namespace_, 0);
        esel = curl_easy_escape(k->easy, k->selector, 0);
        size_t n = strlen(base) + (ens ? strlen(ens) : 0) + (esel ? strlen(esel) : 0) + 64;
        k->url = ens && esel ? malloc(n) : NULL;
        if (k->url)
            snprintf(k->url, n, "%s/api/v1/namespaces/%s/pods?labelSelector=%s", base, ens, esel);
        ok = k->url != NULL;
    }
    curl_free(ens);
    curl_free(esel);
    if (!ok) {
        discovery__k8s_free(k);
        return NULL;
    }
    return k;
}

int discovery__k8s_list(discovery__k8s_t *k, discovery__k8s_done_fn done, void *ud, char *why,
                        size_t whylen)
{
    if (k->in_flight) {
        snprintf(why, whylen, "a lookup is already in flight");
        return UKKO_EAGAIN;
    }
    k->done = done;
    k->ud = ud;
    k->retried = false;
    k->started_ms = ukko_now_ms();
    ukko_buf_reset(&k->body);
    const struct curl_slist *headers; /* start() uses k->headers itself */
    int rc = discovery__k8s_auth(k, &headers, why, whylen);
    if (rc == 0) {
        rc = start(k);
        if (rc < 0)
            snprintf(why, whylen, "libcurl could not start the request (%s)", ukko_strerror(rc));
    }
    return rc;
}

void discovery__k8s_cancel(discovery__k8s_t *k)
{
    if (!k->in_flight)
        return;
    discovery__http_remove(k->http, k->easy);
    k->in_flight = false;
    ukko_buf_destroy(&k->body);
    ukko_buf_init(&k->body, (size_t)k->dc->k8s.max_response_bytes);
}

int discovery__k8s_auth(discovery__k8s_t *k, const struct curl_slist **headers, char *why,
                        size_t whylen)
{
    bool changed;
    int rc = load_token(k, false, &changed, why, whylen);
    if (rc == 0 && access(k->dc->k8s.api_ca_path, R_OK) < 0) {
        int e = errno;
        snprintf(why, whylen,
                 "cannot read the CA file %s: %s (set discovery.kubernetes-api.api-ca-path; the "
                 "API server is never contacted unverified)",
                 k->dc->k8s.api_ca_path, strerror(e));
        rc = -e;
    }
    *headers = rc == 0 ? k->headers : NULL;
    return rc;
}

const char *discovery__k8s_ca(const discovery__k8s_t *k)
{
    return k->dc->k8s.api_ca_path;
}

int64_t discovery__k8s_timeout_ms(const discovery__k8s_t *k)
{
    return k->dc->k8s.resolve_timeout_ms;
}

const char *discovery__k8s_base(const discovery__k8s_t *k)
{
    return k->base;
}

const ukko_podlist_filter_t *discovery__k8s_filter(const discovery__k8s_t *k)
{
    return &k->filter;
}

const char *discovery__k8s_url(const discovery__k8s_t *k)
{
    return k->url;
}

const char *discovery__k8s_namespace(const discovery__k8s_t *k)
{
    return k->namespace_;
}

const char *discovery__k8s_selector(const discovery__k8s_t *k)
{
    return k->selector;
}

void discovery__k8s_free(discovery__k8s_t *k)
{
    if (!k)
        return;
    discovery__k8s_cancel(k);
    if (k->easy)
        curl_easy_cleanup(k->easy);
    drop_headers(k);
    wipe(k->token);
    free(k->token);
    free(k->url);
    ukko_buf_destroy(&k->body);
    free(k);
}
