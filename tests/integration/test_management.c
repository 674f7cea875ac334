/* Integration: a real `ukko` process and its management HTTP server: every
 * route, promtool on /metrics, keep-alive and pipelining, the caps, slow and
 * garbage clients that must not disturb others, config errors, and orderly
 * stops on SIGTERM and SIGINT. Addresses 127.0.0.2-127.0.0.29 are this file's. */
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PORT 8558

static pid_t pid = -1;
static char *dir;
static char logpath[512];
static const char *host;

/* Starts ukko on host with extra environment; waits for /alive. */
static void start_node(const char *h, const char *const extra[])
{
    host = h;
    dir = ut_tempdir();
    cr_assert(dir);
    snprintf(logpath, sizeof(logpath), "%s/ukko.log", dir);
    char hostenv[64];
    snprintf(hostenv, sizeof(hostenv), "UKKO_MANAGEMENT_HOSTNAME=%s", h);
    const char *env[16] = {hostenv};
    size_t n = 1;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    const char *argv[] = {UKKO_BIN, "run", NULL};
    pid = ut_spawn(argv, env, logpath);
    cr_assert(pid > 0);
    if (!ut_wait_status(h, PORT, "/alive", 200, 10000)) {
        ukko_buf_t log;
        ukko_buf_init(&log, 0);
        ut_read_file(logpath, &log);
        cr_assert_fail("ukko did not answer /alive 200 on %s:%d within 10s; its log:\n%s", h,
                       PORT, log.data ? log.data : "");
    }
}

static void stop_node(void)
{
    if (pid > 0)
        ut_stop(pid, SIGKILL, 5000);
    pid = -1;
    ut_rmtree(dir);
    free(dir);
    dir = NULL;
}

static bool log_contains(const char *what)
{
    ukko_buf_t log;
    ukko_buf_init(&log, 0);
    ut_read_file(logpath, &log);
    bool found = log.data && strstr(log.data, what);
    ukko_buf_destroy(&log);
    return found;
}

TestSuite(management, .fini = stop_node, .timeout = 60);

Test(management, routes)
{
    start_node("127.0.0.2", NULL);
    ukko_buf_t body;
    ukko_buf_init(&body, 0);
    cr_assert_eq(ut_http(host, PORT, "GET", "/alive", &body, 2000), 200);
    cr_assert_str_eq(body.data, "OK");
    cr_assert_eq(ut_http(host, PORT, "GET", "/ready", &body, 2000), 500,
                 "a node that is not a cluster member is not ready");
    cr_assert(strstr(body.data, "not a member"), "the /ready body names the failing check: %s",
              body.data);
    cr_assert_eq(ut_http(host, PORT, "GET", "/startup", &body, 2000), 200);
    cr_assert_eq(ut_http(host, PORT, "GET", "/nope", &body, 2000), 404);
    cr_assert_eq(ut_http(host, PORT, "DELETE", "/alive", &body, 2000), 405);
    cr_assert_eq(ut_http(host, PORT, "HEAD", "/alive", NULL, 2000), 200);
    cr_assert_eq(ut_http(host, PORT, "GET", "/alive?probe=1", &body, 2000), 200);
    ukko_buf_destroy(&body);
}

Test(management, metrics_pass_promtool)
{
    start_node("127.0.0.3", NULL);
    ukko_buf_t body, out;
    ukko_buf_init(&body, 0);
    ukko_buf_init(&out, 0);
    cr_assert_eq(ut_http(host, PORT, "GET", "/metrics", &body, 2000), 200);
    cr_assert(strstr(body.data, "\nprocess_resident_memory_bytes "), "RSS is reported");
    cr_assert(strstr(body.data, "\nprocess_open_fds "), "open fds are reported");
    cr_assert(strstr(body.data, "process_cpu_seconds_total "), "CPU is reported");
    cr_assert(strstr(body.data, "ukko_uptime_seconds "), "uptime is reported");
    cr_assert(strstr(body.data, "ukko_build_info{version=\"" UKKO_VERSION "\""),
              "build info is reported");
    cr_assert_eq(ut_run("command -v promtool", NULL, NULL), 0,
                 "promtool is missing: scripts/install-deps.sh installs it (Debian package "
                 "prometheus)");
    int rc = ut_run("promtool check metrics", body.data, &out);
    cr_assert_eq(rc, 0, "promtool check metrics rejected /metrics:\n%s\n--- metrics:\n%s",
                 out.data, body.data);
    ukko_buf_destroy(&body);
    ukko_buf_destroy(&out);
}

Test(management, keep_alive_and_pipelining)
{
    start_node("127.0.0.4", NULL);
    int fd = ut_connect(host, PORT, 2000);
    cr_assert(fd >= 0);
    ukko_buf_t body;
    ukko_buf_init(&body, 0);
    const char one[] = "GET /alive HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ut_send_all(fd, one, sizeof(one) - 1), 0);
        cr_assert_eq(ut_read_response(fd, &body, 2000), 200, "request %d on one connection", i);
    }
    const char three[] = "GET /alive HTTP/1.1\r\n\r\nGET /ready HTTP/1.1\r\n\r\n"
                         "GET /nope HTTP/1.1\r\n\r\n";
    cr_assert_eq(ut_send_all(fd, three, sizeof(three) - 1), 0);
    cr_assert_eq(ut_read_response(fd, &body, 2000), 200);
    cr_assert_eq(ut_read_response(fd, &body, 2000), 500);
    cr_assert_eq(ut_read_response(fd, &body, 2000), 404, "pipelined responses come in order");
    close(fd);
    ukko_buf_destroy(&body);
}

/* Sends req on a new connection; expects status and then a closed connection. */
static void expect_rejected(const char *req, size_t len, int status)
{
    int fd = ut_connect(host, PORT, 3000);
    cr_assert(fd >= 0);
    ut_send_all(fd, req, len); /* the server may close before all is sent */
    cr_assert_eq(ut_read_response(fd, NULL, 3000), status);
    cr_assert(ut_closed_by_peer(fd, 3000), "the connection is closed after %d", status);
    close(fd);
}

Test(management, caps_give_414_431_413_and_close)
{
    start_node("127.0.0.5", NULL);
    ukko_buf_t r;
    ukko_buf_init(&r, 0);
    ukko_buf_puts(&r, "GET /");
    for (int i = 0; i < 9000; i++)
        ukko_buf_puts(&r, "a");
    ukko_buf_puts(&r, " HTTP/1.1\r\n\r\n");
    expect_rejected(r.data, r.len, 414);

    ukko_buf_reset(&r);
    ukko_buf_puts(&r, "GET /alive HTTP/1.1\r\n");
    for (int i = 0; i < 400; i++)
        ukko_buf_printf(&r, "X-Filler-%d: %s\r\n", i, "0123456789012345678901234567890123456789");
    ukko_buf_puts(&r, "\r\n");
    expect_rejected(r.data, r.len, 431);

    const char big[] = "PUT /alive HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n";
    expect_rejected(big, sizeof(big) - 1, 413);
    /* A client that keeps sending its body still reads the 413 (the server
     * drains before closing rather than resetting the connection). */
    ukko_buf_reset(&r);
    ukko_buf_puts(&r, big);
    for (int i = 0; i < 256 * 1024 / 64; i++)
        ukko_buf_puts(&r, "0123456789012345678901234567890123456789012345678901234567890123");
    expect_rejected(r.data, r.len, 413);
    const char junk[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
    expect_rejected(junk, sizeof(junk) - 1, 400);
    ukko_buf_destroy(&r);
    /* And the node still serves. */
    cr_assert_eq(ut_http(host, PORT, "GET", "/alive", NULL, 2000), 200);
}

Test(management, misbehaving_clients_do_not_stop_others)
{
    start_node("127.0.0.6", NULL);
    /* A slow client holding a half request, and one sending garbage. */
    int slow = ut_connect(host, PORT, 2000);
    cr_assert(slow >= 0);
    ut_send_all(slow, "GET /alive HTTP/1.1\r\nHost:", 26);
    int bad = ut_connect(host, PORT, 2000);
    cr_assert(bad >= 0);
    for (int i = 0; i < 50; i++)
        ut_send_all(bad, "\xff\xfe garbage \x01\x02\r\n", 15);
    /* Many well-behaved requests are served meanwhile. */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(ut_http(host, PORT, "GET", "/alive", NULL, 2000), 200, "request %d", i);
    cr_assert_eq(ut_read_response(bad, NULL, 2000), 400);
    close(bad);
    close(slow);
    cr_assert_eq(ut_http(host, PORT, "GET", "/alive", NULL, 2000), 200);
}

Test(management, slow_and_idle_clients_are_cut)
{
    const char *env[] = {"UKKO_MANAGEMENT_REQUEST_TIMEOUT=300ms",
                         "UKKO_MANAGEMENT_IDLE_TIMEOUT=300ms", NULL};
    start_node("127.0.0.7", env);
    int slow = ut_connect(host, PORT, 5000);
    cr_assert(slow >= 0);
    ut_send_all(slow, "GET /alive HTTP/1.1\r\n", 21);
    cr_assert_eq(ut_read_response(slow, NULL, 5000), 408,
                 "a request not completed within request-timeout gets 408");
    cr_assert(ut_closed_by_peer(slow, 5000));
    close(slow);
    int idle = ut_connect(host, PORT, 5000);
    cr_assert(idle >= 0);
    cr_assert(ut_closed_by_peer(idle, 5000), "an idle connection is closed after idle-timeout");
    close(idle);
    ukko_buf_t body;
    ukko_buf_init(&body, 0);
    cr_assert_eq(ut_http(host, PORT, "GET", "/metrics", &body, 2000), 200);
    cr_assert(strstr(body.data, "ukko_http_timeouts_total "), "timeouts are counted");
    cr_assert_not(strstr(body.data, "ukko_http_timeouts_total 0\n"), "timeouts are counted");
    ukko_buf_destroy(&body);
}

Test(management, max_connections_gives_503)
{
    const char *env[] = {"UKKO_MANAGEMENT_MAX_CONNECTIONS=2", NULL};
    start_node("127.0.0.8", env);
    /* Earlier probe connections may still be closing: retry until two
     * fresh ones are both served, then a third must be refused. */
    int a = -1, b = -1;
    int64_t deadline = ukko_now_ms() + 5000;
    for (;;) {
        a = ut_connect(host, PORT, 2000);
        b = ut_connect(host, PORT, 2000);
        cr_assert(a >= 0 && b >= 0);
        ut_send_all(a, "GET /alive HTTP/1.1\r\n\r\n", 23);
        ut_send_all(b, "GET /alive HTTP/1.1\r\n\r\n", 23);
        int sa = ut_read_response(a, NULL, 2000), sb = ut_read_response(b, NULL, 2000);
        if (sa == 200 && sb == 200)
            break;
        close(a);
        close(b);
        cr_assert(ukko_now_ms() < deadline, "two connections never both served: %d %d", sa, sb);
        usleep(20000);
    }
    int c = ut_connect(host, PORT, 2000);
    cr_assert(c >= 0);
    cr_assert_eq(ut_read_response(c, NULL, 2000), 503);
    close(a);
    close(b);
    close(c);
    /* Room again once those are closed. */
    cr_assert(ut_wait_status(host, PORT, "/alive", 200, 5000));
}

Test(management, sigterm_is_an_orderly_stop)
{
    start_node("127.0.0.9", NULL);
    int code = ut_stop(pid, SIGTERM, 10000);
    pid = -1;
    cr_assert_eq(code, 0, "SIGTERM exits 0, got %d", code);
    cr_assert(log_contains("received SIGTERM"), "the stop is logged");
    cr_assert(log_contains("stopped in order"), "the stop is logged");
}

Test(management, sigint_is_an_orderly_stop)
{
    const char *env[] = {"UKKO_LOG_FORMAT=text", NULL};
    start_node("127.0.0.10", env);
    int code = ut_stop(pid, SIGINT, 10000);
    pid = -1;
    cr_assert_eq(code, 0, "SIGINT exits 0, got %d", code);
    cr_assert(log_contains(" info  node: stopping"), "text logs are for people");
}

Test(management, sighup_is_ignored_with_a_reason)
{
    start_node("127.0.0.11", NULL);
    kill(pid, SIGHUP);
    int64_t deadline = ukko_now_ms() + 5000;
    while (!log_contains("received SIGHUP") && ukko_now_ms() < deadline)
        usleep(10000);
    cr_assert(log_contains("received SIGHUP"));
    cr_assert_eq(ut_http(host, PORT, "GET", "/alive", NULL, 2000), 200, "still serving");
}

Test(management, json_logs)
{
    start_node("127.0.0.12", NULL);
    ut_stop(pid, SIGTERM, 10000);
    pid = -1;
    ukko_buf_t log;
    ukko_buf_init(&log, 0);
    ut_read_file(logpath, &log);
    int lines = 0;
    for (char *line = strtok(log.data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(j, "every log line is a JSON object: %s", line);
        cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "ts")));
        cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "level")));
        cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "component")));
        cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "msg")));
        cJSON_Delete(j);
        lines++;
    }
    cr_assert_geq(lines, 2);
    ukko_buf_destroy(&log);
}

Test(management, bad_config_exits_2_naming_each_problem)
{
    dir = ut_tempdir();
    snprintf(logpath, sizeof(logpath), "%s/ukko.log", dir);
    const char *env[] = {"UKKO_MANAGEMENT_PORT=99999", "UKKO_LOG_LEVEL=chatty", NULL};
    const char *argv[] = {UKKO_BIN, "run", NULL};
    pid_t p = ut_spawn(argv, env, logpath);
    int code = ut_wait_exit(p, 10000);
    cr_assert_eq(code, 2, "a bad config exits 2, got %d", code);
    cr_assert(log_contains("management.port = 99999"));
    cr_assert(log_contains("UKKO_MANAGEMENT_PORT"));
    cr_assert(log_contains("log.level = \\\"chatty\\\""));
}

Test(management, check_config)
{
    dir = ut_tempdir();
    char cfg[512], cmd[1200];
    snprintf(cfg, sizeof(cfg), "%s/ukko.json", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"management\": {\"port\": 8600}}", f);
    fclose(f);
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    snprintf(cmd, sizeof(cmd), "%s check-config %s", UKKO_BIN, cfg);
    cr_assert_eq(ut_run(cmd, NULL, &out), 0);
    cJSON *j = cJSON_Parse(out.data);
    cr_assert(j, "check-config prints the effective config as JSON: %s", out.data);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "management"), "port")->valueint,
                 8600);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "log"), "level")->valuestring,
                     "info");
    cJSON_Delete(j);
    f = fopen(cfg, "w");
    fputs("{\"managment\": {\"port\": 8600}}", f);
    fclose(f);
    cr_assert_eq(ut_run(cmd, NULL, &out), 2);
    cr_assert(strstr(out.data, "unknown key \"managment\""), "got: %s", out.data);
    snprintf(cmd, sizeof(cmd), "%s frobnicate", UKKO_BIN);
    cr_assert_eq(ut_run(cmd, NULL, &out), 2);
    cr_assert(strstr(out.data, "unknown command"));
    snprintf(cmd, sizeof(cmd), "%s --version", UKKO_BIN);
    cr_assert_eq(ut_run(cmd, NULL, &out), 0);
    cr_assert(strstr(out.data, UKKO_VERSION));
    snprintf(cmd, sizeof(cmd), "%s --help", UKKO_BIN);
    cr_assert_eq(ut_run(cmd, NULL, &out), 0);
    cr_assert(strstr(out.data, "check-config"));
    ukko_buf_destroy(&out);
}

Test(management, port_in_use_is_a_clear_error)
{
    start_node("127.0.0.13", NULL);
    pid_t first = pid;
    char second_log[600];
    snprintf(second_log, sizeof(second_log), "%s/second.log", dir);
    const char *env[] = {"UKKO_MANAGEMENT_HOSTNAME=127.0.0.13", NULL};
    const char *argv[] = {UKKO_BIN, "run", NULL};
    pid_t p = ut_spawn(argv, env, second_log);
    int code = ut_wait_exit(p, 10000);
    cr_assert_eq(code, 1, "a second node on a taken port exits 1, got %d", code);
    ukko_buf_t log;
    ukko_buf_init(&log, 0);
    ut_read_file(second_log, &log);
    cr_assert(strstr(log.data, "UKKO_MANAGEMENT_PORT"), "the error says how to fix it: %s",
              log.data);
    ukko_buf_destroy(&log);
    pid = first;
}
