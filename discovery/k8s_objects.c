/* k8s_objects.c: the two small Kubernetes objects bootstrap's expected size
 * is read from: a Pod's controller reference (which StatefulSet owns it) and
 * a StatefulSet's spec.replicas. Bodies are single objects, capped by the
 * caller, so cJSON's tree is fine here. No state; any thread, one call at a
 * time (cJSON keeps its error pointer in a global). */
#include "discovery_internal.h"

#include <stdio.h>
#include <string.h>

int ukko_discovery_pod_owner_parse(const char *json, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(meta)) {
        cJSON_Delete(root);
        return UKKO_EPROTO;
    }
    int rc = UKKO_ENOENT;
    const cJSON *ref;
    cJSON_ArrayForEach(ref, cJSON_GetObjectItemCaseSensitive(meta, "ownerReferences"))
    {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(ref, "kind");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ref, "name");
        const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(ref, "controller");
        if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "StatefulSet") ||
            !cJSON_IsString(name) || !*name->valuestring || !cJSON_IsTrue(ctl))
            continue;
        if (strlen(name->valuestring) >= outlen || strlen(name->valuestring) > 253)
            break; /* no StatefulSet has such a name */
        snprintf(out, outlen, "%s", name->valuestring);
        rc = 0;
        break;
    }
    cJSON_Delete(root);
    return rc;
}

int ukko_discovery_replicas_parse(const char *json, size_t len, int *replicas)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(root, "spec");
    int rc = UKKO_EPROTO;
    if (cJSON_IsObject(root) && cJSON_IsObject(spec) &&
        (!kind || (cJSON_IsString(kind) && !strcmp(kind->valuestring, "StatefulSet")))) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(spec, "replicas");
        if (!r) {
            *replicas = 1; /* the API server's default */
            rc = 0;
        } else if (cJSON_IsNumber(r) && r->valuedouble >= 0 && r->valuedouble <= 1000000 &&
                   r->valuedouble == (double)(int)r->valuedouble) {
            *replicas = (int)r->valuedouble;
            rc = 0;
        }
    }
    cJSON_Delete(root);
    return rc;
}
