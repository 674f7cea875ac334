/* fuzz_watch: what bootstrap reads from the Kubernetes API beside the pod
 * list (discovery/podlist.c, discovery/k8s_objects.c), on arbitrary bytes:
 * a watch event line (first byte 0-127), a Pod's owner (128-191) or a
 * StatefulSet's replicas (192-255). Invariants: a kept pod has a valid IP
 * and a port in 1..65535; strings are terminated within their buffers; an
 * error leaves a reason; nothing leaks. And whenever cJSON accepts an event,
 * its type and pod name agree with cJSON's reading. */
#include "discovery.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_event(const char *text, size_t len)
{
    ukko_podlist_filter_t f = {"management", NULL, 8558};
    ukko_watch_event_t ev;
    char why[256];
    int rc = ukko_discovery_watch_event_parse(text, len, &f, &ev, why, sizeof(why));
    if (rc < 0) {
        if (!why[0])
            abort();
        return;
    }
    if (rc != 0 || ev.type < UKKO_WATCH_ADDED || ev.type > UKKO_WATCH_UNKNOWN)
        abort();
    if (memchr(ev.pod, 0, sizeof(ev.pod)) == NULL ||
        memchr(ev.resource_version, 0, sizeof(ev.resource_version)) == NULL)
        abort();
    if (ev.kept) {
        unsigned char a[16];
        if (inet_pton(AF_INET, ev.host, a) != 1 && inet_pton(AF_INET6, ev.host, a) != 1)
            abort();
        if (ev.port < 1 || ev.port > 65535 || !ev.pod[0])
            abort();
        if (ev.type != UKKO_WATCH_ADDED && ev.type != UKKO_WATCH_MODIFIED)
            abort();
    }
    /* The reference: cJSON's tree of the same line. */
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "object");
    if (root && cJSON_IsString(type) && cJSON_IsObject(obj) && strlen(type->valuestring) < 16) {
        static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
        int want = UKKO_WATCH_UNKNOWN;
        for (int i = 0; i < 5; i++)
            if (!strcmp(type->valuestring, names[i]))
                want = i;
        if (want != ev.type)
            abort();
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
        if (cJSON_IsObject(meta) && cJSON_IsString(name) && strlen(name->valuestring) <= 253 &&
            strcmp(name->valuestring, ev.pod))
            abort();
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t pick = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (pick < 128) {
        check_event(text, len);
    } else if (pick < 192) {
        char name[254];
        int rc = ukko_discovery_pod_owner_parse(text, len, name, sizeof(name));
        if (rc == 0 && (!name[0] || strlen(name) > 253))
            abort();
    } else {
        int replicas = -1;
        int rc = ukko_discovery_replicas_parse(text, len, &replicas);
        if (rc == 0 && (replicas < 0 || replicas > 1000000))
            abort();
    }
    return 0;
}
