/* cluster.c: helpers for tests that run clusters of real `ukko` nodes: a
 * keyring, a node's view through GET /cluster/members, and the check that n
 * nodes make one cluster (Redis' cluster_util.tcl does this for its
 * tests). Test process only. */
#include "ukko_test.h"

#include <stdio.h>
#include <string.h>

int ut_keyring_write(const char *path, char *key, size_t keylen)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 4096);
    int rc = ut_run("openssl rand -base64 32", NULL, &b) == 0 && b.len >= 44 ? 0 : -1;
    if (rc == 0) {
        char text[128];
        snprintf(text, sizeof(text), "[\"%.44s\"]\n", b.data);
        rc = ut_write_file(path, text) == 0 ? 0 : -1;
        if (key)
            snprintf(key, keylen, "%.44s", b.data);
    }
    ukko_buf_destroy(&b);
    return rc;
}

cJSON *ut_members(const char *host, int port, int timeout_ms)
{
    ukko_buf_t body;
    ukko_buf_init(&body, 1 << 20);
    int st = ut_http(host, port, "GET", "/cluster/members", &body, timeout_ms);
    cJSON *j = st == 200 && body.data ? cJSON_Parse(body.data) : NULL;
    ukko_buf_destroy(&body);
    return j;
}

const char *ut_member_status(const cJSON *members, const char *node, char *uid)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(members, "members"))
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "node"));
        if (name && !strcmp(name, node)) {
            if (uid)
                snprintf(uid, 33, "%s",
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "nodeUid")));
            const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "status"));
            return s ? s : "";
        }
    }
    return "";
}

bool ut_one_cluster(const char *const *hosts, int n, char *seen, size_t seenlen)
{
    char leader[128] = "";
    for (int i = 0; i < n; i++) {
        if (ut_http(hosts[i], 8558, "GET", "/ready", NULL, 3000) != 200) {
            snprintf(seen, seenlen, "%s is not ready", hosts[i]);
            return false;
        }
        cJSON *j = ut_members(hosts[i], 8558, 3000);
        if (!j) {
            snprintf(seen, seenlen, "%s does not list members", hosts[i]);
            return false;
        }
        int size = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "members"));
        bool ok = size == n;
        if (!ok)
            snprintf(seen, seenlen, "%s sees %d member(s), not %d", hosts[i], size, n);
        for (int k = 0; ok && k < n; k++) {
            char want[96];
            snprintf(want, sizeof(want), "ukko://ukko@%s:7355", hosts[k]);
            const char *s = ut_member_status(j, want, NULL);
            if (strcmp(s, "Up")) {
                if (*s)
                    snprintf(seen, seenlen, "%s sees %s as %s", hosts[i], want, s);
                else
                    snprintf(seen, seenlen, "%s does not list %s", hosts[i], want);
                ok = false;
            }
        }
        const char *l = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "leader"));
        if (ok && (!l || (*leader && strcmp(l, leader)))) {
            snprintf(seen, seenlen, "%s has leader %s, another node %s", hosts[i],
                     l ? l : "none", leader);
            ok = false;
        }
        if (ok)
            snprintf(leader, sizeof(leader), "%s", l);
        cJSON_Delete(j);
        if (!ok)
            return false;
    }
    return true;
}
