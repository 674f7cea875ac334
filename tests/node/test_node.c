/* Tests node/node.c's guard for operations: the management token, re-read
 * when its file changes, never echoed. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ukko_node_config_t nc;
static ukko_node_t *node;
static char path[64];

static void write_token(const char *t)
{
    /* A new file replaced by rename, as a Secret volume update does. */
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(t, f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

static void setup(void)
{
    memset(&nc, 0, sizeof(nc));
    nc.mgmt_host = "127.0.0.1";
    nc.mgmt_max_request_line = 8192;
    nc.mgmt_max_header_bytes = 16384;
    nc.mgmt_max_body_bytes = 65536;
    nc.mgmt_max_connections = 4;
    nc.mgmt_idle_timeout_ms = nc.mgmt_request_timeout_ms = 1000;
    nc.shutdown_timeout_ms = 1000;
    snprintf(path, sizeof(path), "/tmp/ukko-token-%d", (int)getpid());
    write_token("s3cret\n");
    nc.mgmt_token_path = path;
    node = ukko_node_new(&nc, NULL);
    cr_assert(node);
}

static void teardown(void)
{
    ukko_node_free(node);
    unlink(path);
}

static int authorize(const char *auth, char *body, size_t bodylen)
{
    ukko_http_header_t h[1] = {{"Authorization", auth}};
    ukko_http_request_t req = {.method = "PUT", .path = "/cluster/members/x", .query = "",
                               .headers = h, .nheaders = auth ? 1 : 0, .body = "",
                               .peer = "127.0.0.1:1"};
    ukko_http_response_t res = {.status = 200};
    ukko_buf_init(&res.body, 0);
    ukko_buf_init(&res.headers, 0);
    bool ok = ukko_node_authorize(node, &req, &res);
    snprintf(body, bodylen, "%s", res.body.data ? res.body.data : "");
    int status = ok ? 200 : res.status;
    ukko_buf_destroy(&res.body);
    ukko_buf_destroy(&res.headers);
    return status;
}

TestSuite(node_token, .init = setup, .fini = teardown, .timeout = 10);

Test(node_token, right_token_passes_others_get_401)
{
    char body[512];
    cr_assert_eq(authorize("Bearer s3cret", body, sizeof(body)), 200);
    cr_assert_eq(authorize(NULL, body, sizeof(body)), 401);
    cr_assert(strstr(body, "missing Authorization"), "%s", body);
    cr_assert_eq(authorize("Bearer wrong", body, sizeof(body)), 401);
    cr_assert(strstr(body, "wrong token"), "%s", body);
    cr_assert_null(strstr(body, "s3cret"), "the token is never echoed");
    cr_assert_eq(authorize("Bearer s3cre", body, sizeof(body)), 401, "a prefix is not the token");
    cr_assert_eq(authorize("Basic czNjcmV0", body, sizeof(body)), 401);
}

Test(node_token, rotation_is_picked_up)
{
    char body[512];
    cr_assert_eq(authorize("Bearer s3cret", body, sizeof(body)), 200);
    write_token("rotated");
    cr_assert_eq(authorize("Bearer rotated", body, sizeof(body)), 200);
    cr_assert_eq(authorize("Bearer s3cret", body, sizeof(body)), 401, "the old token is gone");
    unlink(path);
    cr_assert_eq(authorize("Bearer rotated", body, sizeof(body)), 401,
                 "no token file: operations are refused");
}

Test(node_token, disabled_without_a_token_path)
{
    char body[512];
    nc.mgmt_token_path = NULL;
    cr_assert_eq(authorize("Bearer s3cret", body, sizeof(body)), 401);
    cr_assert(strstr(body, "management.token-path"), "the reply says how to enable them: %s", body);
}
