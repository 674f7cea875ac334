/* ctl.c: `ukko members`, `ukko leave ADDRESS`, `ukko down ADDRESS`: libcurl
 * clients of a node's management routes (Pekko Management's shapes), for
 * operators; the commands of the cluster module (module.c). Main thread,
 * one request each. */
#include "cluster_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return ukko_buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

/* One request; returns the HTTP status, or -1 with the reason printed. */
static long request(const char *method, const char *url, const char *form, const char *token,
                    ukko_buf_t *body)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char auth[600];
    struct curl_slist *hdrs = NULL;
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (form)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    long status = -1;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "ukko: %s %s: %s (is a node running there? set --url)\n", method, url,
                curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return status;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static void print_members(const cJSON *j)
{
    printf("self: %s   leader: %s   oldest: %s\n", str(j, "selfNode"), str(j, "leader"),
           str(j, "oldest"));
    printf("%-40s %-9s %-32s %s\n", "NODE", "STATUS", "UID", "ROLES");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "members"))
    {
        char roles[256] = "";
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(m, "roles"))
        {
            if (cJSON_IsString(r)) {
                size_t n = strlen(roles);
                snprintf(roles + n, sizeof(roles) - n, "%s%s", n ? "," : "", r->valuestring);
            }
        }
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(m, "nodeUid");
        char uidbuf[48];
        if (cJSON_IsNumber(uid))
            snprintf(uidbuf, sizeof(uidbuf), "%.0f", uid->valuedouble);
        else
            snprintf(uidbuf, sizeof(uidbuf), "%s", cJSON_IsString(uid) ? uid->valuestring : "-");
        printf("%-40s %-9s %-32s %s\n", str(m, "node"), str(m, "status"), uidbuf, roles);
    }
    const cJSON *u;
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(j, "unreachable"))
    {
        printf("unreachable: %s (observed by", str(u, "node"));
        const cJSON *o;
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(u, "observedBy"))
        {
            printf(" %s", cJSON_IsString(o) ? o->valuestring : "?");
        }
        printf(")\n");
    }
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ukko: cannot read the management token %s: %s (set --token-file or "
                        "management.token-path)\n",
                path, strerror(errno));
        return NULL;
    }
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return strdup(buf);
}

int cluster__ctl_run(const char *command, const char *operand, const char *base_url,
                 const char *token_path)
{
    bool members = !strcmp(command, "members");
    if (!members && !operand) {
        fprintf(stderr, "ukko: %s needs the member's address (ukko %s ADDRESS; ukko members "
                        "lists them)\n",
                command, command);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ukko_buf_t body;
    ukko_buf_init(&body, 64 * 1024 * 1024);
    char url[2048];
    int code = 1;
    char *token = NULL;
    if (members) {
        snprintf(url, sizeof(url), "%s/cluster/members", base_url);
        long st = request("GET", url, NULL, NULL, &body);
        cJSON *j = st == 200 ? cJSON_Parse(body.data ? body.data : "") : NULL;
        if (j) {
            print_members(j);
            code = 0;
        } else if (st > 0) {
            fprintf(stderr, "ukko: GET %s answered %ld: %s\n", url, st,
                    body.data ? body.data : "");
        }
        cJSON_Delete(j);
    } else {
        if (token_path && !(token = read_token(token_path)))
            goto out;
        CURL *c = curl_easy_init();
        char *esc = c ? curl_easy_escape(c, operand, 0) : NULL;
        snprintf(url, sizeof(url), "%s/cluster/members/%s", base_url, esc ? esc : operand);
        curl_free(esc);
        curl_easy_cleanup(c);
        const char *form = !strcmp(command, "leave") ? "operation=Leave" : "operation=Down";
        long st = request("PUT", url, form, token, &body);
        if (st >= 200 && st < 300) {
            printf("%s", body.data ? body.data : "");
            code = 0;
        } else if (st > 0) {
            fprintf(stderr, "ukko: %s %s: %ld %s", command, operand, st,
                    body.data ? body.data : "\n");
        }
    }
out:
    free(token);
    ukko_buf_destroy(&body);
    curl_global_cleanup();
    return code;
}
