/* k8s_owner.c: how many contact points there should be: spec.replicas of
 * the StatefulSet that owns this pod. GET of the pod gives its controller
 * reference (else the StatefulSet's name is the pod's without its "-N"
 * ordinal, as StatefulSets name their pods); GET of the StatefulSet gives
 * the count. Loop thread only. Invariant: one request in flight at a time,
 * and done runs once (never after a cancel). */
#include "discovery_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECT_BYTES (1u << 20) /* a Pod or a StatefulSet: a few KiB */

struct discovery__owner {
    discovery__k8s_t *k;
    discovery__http_t *http;
    discovery__fetch_t *fetch;
    char pod[254];
    char sts[254];
    bool by_convention;
    discovery__owner_fn done;
    void *ud;
};

static void finish(discovery__owner_t *o, int replicas, const char *why)
{
    discovery__owner_fn done = o->done;
    void *ud = o->ud;
    free(o);
    done(ud, replicas, why);
}

static bool get(discovery__owner_t *o, const char *path, discovery__fetch_fn fn)
{
    const struct curl_slist *hdrs = NULL;
    char why[512], url[1200];
    if (discovery__k8s_auth(o->k, &hdrs, why, sizeof(why)) < 0) {
        finish(o, 0, why);
        return false;
    }
    snprintf(url, sizeof(url), "%s%s", discovery__k8s_base(o->k), path);
    o->fetch = discovery__fetch_start(o->http, url, hdrs, discovery__k8s_ca(o->k),
                                      discovery__k8s_timeout_ms(o->k), MAX_OBJECT_BYTES, fn, o);
    if (!o->fetch) {
        finish(o, 0, "out of memory");
        return false;
    }
    return true;
}

static void on_sts(const discovery__fetch_result_t *r, void *ud)
{
    discovery__owner_t *o = ud;
    o->fetch = NULL;
    char why[700];
    int replicas = 0;
    if (r->curl != CURLE_OK) {
        snprintf(why, sizeof(why), "GET of StatefulSet %s failed: %s", o->sts, r->detail);
    } else if (r->http == 403) {
        snprintf(why, sizeof(why),
                 "GET of StatefulSet %s returned 403 Forbidden: the service account needs "
                 "\"get\" on \"statefulsets\" in group \"apps\" (k8s/base/rbac.yaml) to read "
                 "spec.replicas",
                 o->sts);
    } else if (r->http == 404) {
        snprintf(why, sizeof(why), "no StatefulSet %s (found %s)", o->sts,
                 o->by_convention ? "from the pod's name" : "in the pod's ownerReferences");
    } else if (r->http != 200) {
        snprintf(why, sizeof(why), "GET of StatefulSet %s returned %ld", o->sts, r->http);
    } else if (ukko_discovery_replicas_parse(r->body->data, r->body->len, &replicas) < 0) {
        replicas = 0;
        snprintf(why, sizeof(why), "StatefulSet %s: the answer has no usable spec.replicas",
                 o->sts);
    } else {
        snprintf(why, sizeof(why), "spec.replicas of StatefulSet %s", o->sts);
    }
    finish(o, replicas, why);
}

static void ask_sts(discovery__owner_t *o)
{
    char *ens = curl_easy_escape(NULL, discovery__k8s_namespace(o->k), 0);
    char *ename = curl_easy_escape(NULL, o->sts, 0);
    char path[900];
    snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/statefulsets/%s", ens ? ens : "",
             ename ? ename : "");
    curl_free(ens);
    curl_free(ename);
    get(o, path, on_sts);
}

/* "ukko-12" -> "ukko": what a StatefulSet calls its pods. */
static bool strip_ordinal(const char *pod, char *out, size_t outlen)
{
    const char *dash = strrchr(pod, '-');
    if (!dash || dash == pod || !dash[1])
        return false;
    for (const char *p = dash + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    snprintf(out, outlen, "%.*s", (int)(dash - pod), pod);
    return true;
}

static void on_pod(const discovery__fetch_result_t *r, void *ud)
{
    discovery__owner_t *o = ud;
    o->fetch = NULL;
    if (r->curl == CURLE_OK && r->http == 200 &&
        ukko_discovery_pod_owner_parse(r->body->data, r->body->len, o->sts, sizeof(o->sts)) == 0) {
        ask_sts(o);
        return;
    }
    if (r->curl == CURLE_OK && r->http == 200) {
        char why[400];
        snprintf(why, sizeof(why), "pod %s is not owned by a StatefulSet", o->pod);
        finish(o, 0, why);
        return;
    }
    /* No right to get pods, or no such pod: StatefulSets name their pods
     * NAME-N, so the name tells which set to ask. */
    if (!strip_ordinal(o->pod, o->sts, sizeof(o->sts))) {
        char why[400];
        snprintf(why, sizeof(why),
                 "GET of pod %s %s%ld, and its name is not that of a StatefulSet's pod", o->pod,
                 r->curl != CURLE_OK ? "failed" : "returned ",
                 r->curl != CURLE_OK ? 0L : r->http);
        finish(o, 0, why);
        return;
    }
    o->by_convention = true;
    ask_sts(o);
}

discovery__owner_t *discovery__owner_start(discovery__k8s_t *k, discovery__http_t *http,
                                           const char *pod, discovery__owner_fn done, void *ud)
{
    discovery__owner_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->k = k;
    o->http = http;
    o->done = done;
    o->ud = ud;
    snprintf(o->pod, sizeof(o->pod), "%s", pod);
    char *ens = curl_easy_escape(NULL, discovery__k8s_namespace(k), 0);
    char *epod = curl_easy_escape(NULL, pod, 0);
    char path[900];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ens ? ens : "", epod ? epod : "");
    curl_free(ens);
    curl_free(epod);
    /* get() reports its own failures through done, which frees o: the
     * caller learns of it from the callback, as with any other outcome. */
    return get(o, path, on_pod) ? o : NULL;
}

void discovery__owner_cancel(discovery__owner_t *o)
{
    if (!o)
        return;
    discovery__fetch_cancel(o->fetch);
    free(o);
}
