/* Tests node/log.c: JSON lines parse back with their fields and escapes,
 * text lines quote what would not read back, levels filter. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fds[2];

static void setup(void)
{
    cr_assert_eq(pipe(fds), 0);
    ukko_log_set_fd(fds[1]);
}

static void teardown(void)
{
    ukko_log_set_fd(2);
    ukko_log_setup(UKKO_LOG_INFO, UKKO_LOG_JSON);
    close(fds[0]);
    close(fds[1]);
}

static char *read_line(void)
{
    static char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    cr_assert(n > 0);
    buf[n] = '\0';
    cr_assert_eq(buf[n - 1], '\n', "a log line ends with a newline");
    return buf;
}

TestSuite(log, .init = setup, .fini = teardown, .timeout = 10);

Test(log, json_line_with_fields_and_escapes)
{
    ukko_log_setup(UKKO_LOG_DEBUG, UKKO_LOG_JSON);
    ukko_logf(UKKO_LOG_WARN, "http",
              UKKO_FIELDS(UKKO_FS("peer", "1.2.3.4:5"), UKKO_FI("status", 431),
                          UKKO_FB("closed", true), UKKO_FF("ratio", 0.5),
                          UKKO_FS("odd", "a\"b\\c\n\x01")),
              "rejected \"%s\"", "x\ty");
    cJSON *j = cJSON_Parse(read_line());
    cr_assert(j, "the line is JSON");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "component")->valuestring, "http");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "rejected \"x\ty\"");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "peer")->valuestring, "1.2.3.4:5");
    cr_assert_eq(cJSON_GetObjectItem(j, "status")->valueint, 431);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "closed")));
    cr_assert_float_eq(cJSON_GetObjectItem(j, "ratio")->valuedouble, 0.5, 1e-9);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "odd")->valuestring, "a\"b\\c\n\x01");
    const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
    cr_assert_eq(strlen(ts), 24, "ts is ISO 8601 UTC with milliseconds: %s", ts);
    cr_assert_eq(ts[23], 'Z');
    cJSON_Delete(j);
}

Test(log, text_line_quotes_values_with_spaces)
{
    ukko_log_setup(UKKO_LOG_INFO, UKKO_LOG_TEXT);
    ukko_logf(UKKO_LOG_INFO, "node", UKKO_FIELDS(UKKO_FS("reason", "received SIGTERM"),
                                                 UKKO_FS("addr", "0.0.0.0:8558")),
              "stopping");
    char *line = read_line();
    cr_assert(strstr(line, " info  node: stopping reason=\"received SIGTERM\" addr=0.0.0.0:8558\n"),
              "got: %s", line);
}

Test(log, level_filters)
{
    ukko_log_setup(UKKO_LOG_WARN, UKKO_LOG_JSON);
    cr_assert_not(ukko_log_enabled(UKKO_LOG_INFO));
    cr_assert(ukko_log_enabled(UKKO_LOG_ERROR));
    ukko_log(UKKO_LOG_INFO, "x", "hidden");
    ukko_log(UKKO_LOG_ERROR, "x", "shown");
    cr_assert(strstr(read_line(), "\"msg\":\"shown\""), "only the error line was written");
    ukko_log_level_t l;
    cr_assert_eq(ukko_log_level_parse("WARNING", &l), 0);
    cr_assert_eq(l, UKKO_LOG_WARN);
    cr_assert_lt(ukko_log_level_parse("loud", &l), 0);
}

Test(buf, cap_is_an_error_not_an_allocation, .timeout = 10)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 8);
    cr_assert_eq(ukko_buf_puts(&b, "12345678"), 0);
    cr_assert_eq(ukko_buf_puts(&b, "9"), UKKO_E2BIG);
    cr_assert_eq(b.len, 8, "a failed append leaves the buffer as it was");
    cr_assert_str_eq(b.data, "12345678");
    cr_assert_eq(ukko_buf_printf(&b, "%s", "x"), UKKO_E2BIG);
    ukko_buf_consume(&b, 3);
    cr_assert_str_eq(b.data, "45678");
    cr_assert_eq(ukko_buf_printf(&b, "%03d", 7), 0);
    cr_assert_str_eq(b.data, "45678007");
    ukko_buf_destroy(&b);
    ukko_buf_init(&b, 0);
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(ukko_buf_printf(&b, "<%s>", big), 0, "long formats grow the buffer");
    cr_assert_eq(b.len, 1001);
    ukko_buf_reset(&b);
    cr_assert_eq(ukko_buf_json_str(&b, "q\"\x02"), 0);
    cr_assert_str_eq(b.data, "\"q\\\"\\u0002\"");
    ukko_buf_destroy(&b);
}
