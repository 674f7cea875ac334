/* fetch.c: one HTTP GET on the libcurl-on-libev engine (curl_ev.c), with a
 * body cap and a whole-request timeout: the Kubernetes objects bootstrap
 * reads (over TLS, verified against the CA file) and the contact points'
 * management routes (plain http). Loop thread only. Invariants: a fetch owns
 * its easy handle and a copy of its headers (wiped when freed: they may hold
 * the token), and its done callback runs once, after the handle left the
 * multi, or never when it was cancelled. */
#include "discovery_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct discovery__fetch {
    discovery__http_t *http;
    CURL *easy;
    struct curl_slist *headers;
    ukko_buf_t body;
    bool too_large;
    int64_t started_ms;
    char errbuf[CURL_ERROR_SIZE];
    discovery__fetch_fn done;
    void *ud;
};

static void wipe_headers(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next) {
        volatile char *p = i->data;
        while (*p)
            *p++ = 0;
    }
    curl_slist_free_all(l);
}

static void release(discovery__fetch_t *f)
{
    if (f->easy)
        curl_easy_cleanup(f->easy);
    wipe_headers(f->headers);
    ukko_buf_destroy(&f->body);
    free(f);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    discovery__fetch_t *f = ud;
    if (ukko_buf_append(&f->body, p, size * n) < 0) {
        f->too_large = true;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    return size * n;
}

static void on_done(CURL *easy, CURLcode result, void *ud)
{
    discovery__fetch_t *f = ud;
    discovery__fetch_result_t r = {.curl = result, .body = &f->body, .too_large = f->too_large};
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.http);
    r.detail = f->errbuf[0] ? f->errbuf : curl_easy_strerror(result);
    r.took_ms = ukko_now_ms() - f->started_ms;
    if (f->too_large)
        r.detail = "the response is larger than allowed";
    if (!f->body.data)
        ukko_buf_append(&f->body, "", 0);
    f->done(&r, f->ud);
    release(f);
}

discovery__fetch_t *discovery__fetch_start(discovery__http_t *h, const char *url,
                                           const struct curl_slist *headers, const char *ca_path,
                                           int64_t timeout_ms, size_t cap,
                                           discovery__fetch_fn done, void *ud)
{
    discovery__fetch_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->http = h;
    f->done = done;
    f->ud = ud;
    f->started_ms = ukko_now_ms();
    ukko_buf_init(&f->body, cap);
    for (const struct curl_slist *l = headers; l; l = l->next) {
        struct curl_slist *n = curl_slist_append(f->headers, l->data);
        if (!n)
            goto fail;
        f->headers = n;
    }
    CURL *e = f->easy = curl_easy_init();
    if (!e)
        goto fail;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (ca_path) {
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(e, CURLOPT_CAINFO, ca_path);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    } else {
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    }
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ukko/" UKKO_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    if (discovery__http_add(h, e, on_done, f) < 0)
        goto fail;
    return f;
fail:
    release(f);
    return NULL;
}

void discovery__fetch_cancel(discovery__fetch_t *f)
{
    if (!f)
        return;
    discovery__http_remove(f->http, f->easy);
    release(f);
}
