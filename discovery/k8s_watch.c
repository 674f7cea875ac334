/* k8s_watch.c: a watch=true stream of the pods, from a list's
 * resourceVersion: each line the API server sends is one event, parsed with
 * the pod list's rules and handed on. Loop thread only. Invariants: events
 * and the end are delivered from the watch's own zero timer, never inside
 * libcurl's call chain (a callback may stop the watch); a line is never held
 * beyond max-response-bytes; the token travels only to the verified server. */
#include "discovery_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_TIMEOUT_S 300 /* the server ends the stream after this; it is resumed */
#define MAX_BATCH 256       /* events handed on per loop iteration */

struct discovery__watch {
    discovery__k8s_t *k;
    discovery__http_t *http;
    struct ev_loop *loop;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    bool running; /* a transfer is in the multi */
    bool ended;   /* it left the multi: end to be reported after the lines */
    CURLcode result;
    long http_status;
    ukko_buf_t rx; /* bytes not yet cut into lines */
    size_t scanned; /* rx bytes known to hold no newline */
    bool too_large;
    char errbuf[CURL_ERROR_SIZE];
    ev_timer deliver;
    uint64_t events;
    discovery__watch_event_fn on_event;
    discovery__watch_end_fn on_end;
    void *ud;
};

static void drop_transfer(discovery__watch_t *w)
{
    if (w->running)
        discovery__http_remove(w->http, w->easy);
    w->running = false;
    if (w->easy)
        curl_easy_cleanup(w->easy);
    w->easy = NULL;
    for (struct curl_slist *i = w->headers; i; i = i->next) {
        volatile char *p = i->data;
        while (*p)
            *p++ = 0;
    }
    curl_slist_free_all(w->headers);
    w->headers = NULL;
    free(w->url);
    w->url = NULL;
    ev_timer_stop(w->loop, &w->deliver);
    ukko_buf_reset(&w->rx);
    w->scanned = 0;
    w->ended = false;
}

static void kick(discovery__watch_t *w)
{
    if (!ev_is_active(&w->deliver)) {
        ev_timer_set(&w->deliver, 0., 0.);
        ev_timer_start(w->loop, &w->deliver);
    }
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    discovery__watch_t *w = ud;
    long code = 0;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &code);
    if (ukko_buf_append(&w->rx, p, size * n) < 0) {
        w->too_large = true;
        return 0;
    }
    if (code == 200 && memchr(p, '\n', size * n))
        kick(w);
    return size * n;
}

static void on_done(CURL *easy, CURLcode result, void *ud)
{
    discovery__watch_t *w = ud;
    w->running = false;
    w->ended = true;
    w->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &w->http_status);
    kick(w);
}

/* Why the stream ended, for the end callback: 0 (the server closed it in
 * order: resume), UKKO_EPROTO (list again), another < 0 (a failure). */
static int end_reason(discovery__watch_t *w, char *why, size_t whylen)
{
    const char *url = discovery__k8s_url(w->k);
    if (w->too_large) {
        snprintf(why, whylen,
                 "watch of %s: an event is larger than "
                 "discovery.kubernetes-api.max-response-bytes",
                 url);
        return UKKO_E2BIG;
    }
    if (w->result == CURLE_OK && w->http_status == 200) {
        snprintf(why, whylen, "the API server ended the watch");
        return 0;
    }
    if (w->result == CURLE_OK) {
        long c = w->http_status;
        snprintf(why, whylen, "watch of %s returned %ld%s", url, c,
                 c == 403 ? " Forbidden: the service account needs \"watch\" on \"pods\" "
                            "(k8s/base/rbac.yaml), or set discovery.kubernetes-api.watch false"
                 : c == 401 ? " Unauthorized: the token was rejected"
                 : c == 410 ? " Gone: the resourceVersion expired; listing again"
                            : "");
        return c == 410 ? UKKO_EPROTO : UKKO_EAGAIN;
    }
    snprintf(why, whylen, "watch of %s: %s", url,
             w->errbuf[0] ? w->errbuf : curl_easy_strerror(w->result));
    /* A stream cut by a timeout, a proxy or the network is resumed at once:
     * the resourceVersion says where. */
    return w->result == CURLE_OPERATION_TIMEDOUT || w->result == CURLE_PARTIAL_FILE ||
                   w->result == CURLE_RECV_ERROR || w->result == CURLE_GOT_NOTHING
               ? 0
               : UKKO_EAGAIN;
}

static void on_deliver(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    discovery__watch_t *w = t->data;
    long code = 0;
    if (w->easy)
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &code);
    for (int batch = 0; code == 200 && batch < MAX_BATCH; batch++) {
        char *base = w->rx.data;
        char *nl = base ? memchr(base + w->scanned, '\n', w->rx.len - w->scanned) : NULL;
        if (!nl) {
            w->scanned = w->rx.len;
            break;
        }
        size_t len = (size_t)(nl - base);
        ukko_watch_event_t ev;
        char why[256];
        int rc = len ? ukko_discovery_watch_event_parse(base, len, discovery__k8s_filter(w->k),
                                                        &ev, why, sizeof(why))
                     : 1;
        ukko_buf_consume(&w->rx, len + 1);
        w->scanned = 0;
        if (rc == 1)
            continue; /* an empty line (a keep-alive) */
        if (rc < 0) {
            ukko_logf(UKKO_LOG_WARN, DISCOVERY_LOG, UKKO_FIELDS(UKKO_FS("reason", "malformed")),
                      "watch of %s: an event that is not one: %s; listing again",
                      discovery__k8s_url(w->k), why);
            discovery__watch_end_fn end = w->on_end;
            void *ud = w->ud;
            drop_transfer(w);
            end(ud, UKKO_EPROTO, "a malformed watch event");
            return;
        }
        w->events++;
        /* The callback may stop the watch (and start another): nothing of
         * this one is touched after it unless it is still the same run. */
        CURL *same = w->easy;
        w->on_event(w->ud, &ev);
        if (w->easy != same || !w->easy)
            return;
    }
    if (w->rx.data && memchr(w->rx.data + w->scanned, '\n', w->rx.len - w->scanned)) {
        kick(w); /* more lines than one batch: the rest next iteration */
        return;
    }
    if (!w->ended)
        return;
    char why[512];
    int status = end_reason(w, why, sizeof(why));
    discovery__watch_end_fn end = w->on_end;
    void *ud = w->ud;
    drop_transfer(w);
    end(ud, status, why);
}

discovery__watch_t *discovery__watch_new(discovery__k8s_t *k, discovery__http_t *http,
                                         struct ev_loop *loop, size_t max_bytes)
{
    discovery__watch_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->k = k;
    w->http = http;
    w->loop = loop;
    ukko_buf_init(&w->rx, max_bytes);
    ev_init(&w->deliver, on_deliver);
    w->deliver.data = w;
    return w;
}

int discovery__watch_start(discovery__watch_t *w, const char *rv, discovery__watch_event_fn on_event,
                           discovery__watch_end_fn on_end, void *ud, char *why, size_t whylen)
{
    drop_transfer(w);
    const struct curl_slist *hdrs = NULL;
    int rc = discovery__k8s_auth(w->k, &hdrs, why, whylen);
    if (rc < 0)
        return rc;
    w->on_event = on_event;
    w->on_end = on_end;
    w->ud = ud;
    w->too_large = false;
    w->errbuf[0] = '\0';
    w->http_status = 0;
    char *erv = curl_easy_escape(NULL, rv, 0);
    size_t n = strlen(discovery__k8s_url(w->k)) + (erv ? strlen(erv) : 0) + 128;
    w->url = erv ? malloc(n) : NULL;
    if (w->url)
        snprintf(w->url, n, "%s&watch=true&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
                 discovery__k8s_url(w->k), erv, WATCH_TIMEOUT_S);
    curl_free(erv);
    for (const struct curl_slist *l = hdrs; l && w->url; l = l->next) {
        struct curl_slist *x = curl_slist_append(w->headers, l->data);
        if (!x)
            break;
        w->headers = x;
    }
    CURL *e = w->url && w->headers ? curl_easy_init() : NULL;
    if (!e) {
        drop_transfer(w);
        snprintf(why, whylen, "out of memory starting a watch");
        return UKKO_ENOMEM;
    }
    w->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CAINFO, w->k ? discovery__k8s_ca(w->k) : NULL);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)discovery__k8s_timeout_ms(w->k));
    /* The server ends the stream after timeoutSeconds; a stream silent past
     * that (a dead peer keeping the connection) is cut here, and resumed. */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(WATCH_TIMEOUT_S + 30) * 1000L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ukko/" UKKO_VERSION " (discovery watch)");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->errbuf);
    rc = discovery__http_add(w->http, e, on_done, w);
    if (rc < 0) {
        drop_transfer(w);
        snprintf(why, whylen, "libcurl could not start the watch");
        return rc;
    }
    w->running = true;
    return 0;
}

void discovery__watch_stop(discovery__watch_t *w)
{
    if (w)
        drop_transfer(w);
}

bool discovery__watch_active(const discovery__watch_t *w)
{
    return w && w->easy;
}

uint64_t discovery__watch_events(const discovery__watch_t *w)
{
    return w ? w->events : 0;
}

void discovery__watch_free(discovery__watch_t *w)
{
    if (!w)
        return;
    drop_transfer(w);
    ukko_buf_destroy(&w->rx);
    free(w);
}
