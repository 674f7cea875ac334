/* Tests node/config.c: defaults, file, environment, and every kind of problem
 * a user can make, each reported as one line naming key, value and allowed. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bool flag;
    int64_t count;
    int64_t wait_ms;
    char *name;
    int mode;
    ukko_strlist_t seeds;
    cJSON *extra;
} test_cfg_t;

static const char *const modes[] = {"fast", "safe", NULL};

static int check_extra(const cJSON *v, char *why, size_t whylen)
{
    if (!cJSON_IsObject(v)) {
        snprintf(why, whylen, "an object of named settings");
        return UKKO_EINVAL;
    }
    return 0;
}

#define TC(f) offsetof(test_cfg_t, f)
static const ukko_cfg_key_t keys[] = {
    {"t.flag", UKKO_CFG_BOOL, TC(flag), "false", 0, 0, NULL, NULL, "a flag"},
    {"t.count", UKKO_CFG_INT, TC(count), "3", 1, 10, NULL, NULL, "a count"},
    {"t.wait", UKKO_CFG_DURATION, TC(wait_ms), "\"5s\"", 10, 3600000, NULL, NULL, "a wait"},
    {"t.name", UKKO_CFG_STRING, TC(name), "\"abc\"", 0, 0, NULL, NULL, "a name"},
    {"t.mode", UKKO_CFG_ENUM, TC(mode), "\"safe\"", 0, 0, modes, NULL, "a mode"},
    {"t.nested.seeds", UKKO_CFG_STRLIST, TC(seeds), "[]", 0, 3, NULL, NULL, "seeds"},
    {"t.extra", UKKO_CFG_JSON, TC(extra), "{}", 0, 0, NULL, check_extra, "extra"},
};

static ukko_config_t *cfg;
static test_cfg_t tc;
static ukko_node_config_t nc;
static char path[64];

static void setup(void)
{
    memset(&tc, 0, sizeof(tc));
    cfg = ukko_config_new();
    cr_assert(cfg);
    cr_assert_eq(ukko_config_add(cfg, keys, sizeof(keys) / sizeof(keys[0]), &tc), 0);
    cr_assert_eq(ukko_node_config_register(cfg, &nc), 0);
    snprintf(path, sizeof(path), "/tmp/ukko-test-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
}

static void teardown(void)
{
    ukko_config_free(cfg);
    unlink(path);
}

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

/* Asserts that some error line contains every given fragment. */
static void assert_error(const char *a, const char *b, const char *c)
{
    for (size_t i = 0; i < ukko_config_error_count(cfg); i++) {
        const char *e = ukko_config_error(cfg, i);
        if (strstr(e, a) && (!b || strstr(e, b)) && (!c || strstr(e, c)))
            return;
    }
    fprintf(stderr, "errors were:\n");
    for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
        fprintf(stderr, "  %s\n", ukko_config_error(cfg, i));
    cr_assert_fail("expected an error line containing \"%s\" \"%s\" \"%s\"", a, b ? b : "",
                   c ? c : "");
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 10);

Test(config, defaults_without_file_or_env)
{
    cr_assert_eq(ukko_config_load(cfg, NULL, NULL), 0);
    cr_assert_eq(nc.mgmt_port, 8558);
    cr_assert_str_eq(nc.mgmt_host, "0.0.0.0");
    cr_assert_eq(nc.mgmt_idle_timeout_ms, 60000);
    cr_assert_eq(tc.count, 3);
    cr_assert_eq(tc.wait_ms, 5000);
    cr_assert_str_eq(tc.name, "abc");
    cr_assert_eq(tc.mode, 1);
    cr_assert_eq(tc.seeds.n, 0);
    cr_assert(cJSON_IsObject(tc.extra));
}

Test(config, file_values_and_comments)
{
    write_file("// a comment\n{\n  \"t\": { /* block */ \"count\": 7, \"wait\": \"250ms\",\n"
               "  \"name\": \"x // not a comment /* nor this */\", \"mode\": \"fast\",\n"
               "  \"flag\": true, \"nested\": {\"seeds\": [\"a:1\", \"b:2\"]}},\n"
               "  \"management\": {\"port\": 8600}\n}\n");
    cr_assert_eq(ukko_config_load(cfg, path, NULL), 0, "first error: %s",
                 ukko_config_error(cfg, 0));
    cr_assert_eq(tc.count, 7);
    cr_assert_eq(tc.wait_ms, 250);
    cr_assert_str_eq(tc.name, "x // not a comment /* nor this */");
    cr_assert_eq(tc.mode, 0);
    cr_assert(tc.flag);
    cr_assert_eq(tc.seeds.n, 2);
    cr_assert_str_eq(tc.seeds.v[1], "b:2");
    cr_assert_eq(nc.mgmt_port, 8600);
}

Test(config, environment_overrides_file)
{
    write_file("{\"management\": {\"port\": 8600}, \"t\": {\"count\": 4}}");
    char *env[] = {"UKKO_MANAGEMENT_PORT=9000", "UKKO_T_FLAG=yes", "UKKO_T_NESTED_SEEDS=h1:1, h2:2",
                   "UKKO_T_WAIT=2m", "PATH=/bin", NULL};
    cr_assert_eq(ukko_config_load(cfg, path, env), 0, "first error: %s",
                 ukko_config_error(cfg, 0));
    cr_assert_eq(nc.mgmt_port, 9000);
    cr_assert_eq(tc.count, 4);
    cr_assert(tc.flag);
    cr_assert_eq(tc.wait_ms, 120000);
    cr_assert_eq(tc.seeds.n, 2);
    cr_assert_str_eq(tc.seeds.v[0], "h1:1");
    cr_assert_str_eq(tc.seeds.v[1], "h2:2");
}

Test(config, environment_list_as_json_and_json_value)
{
    char *env[] = {"UKKO_T_NESTED_SEEDS=[\"a\",\"b\",\"c\"]", "UKKO_T_EXTRA={\"k\":1}", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 0);
    cr_assert_eq(tc.seeds.n, 3);
    cr_assert_eq(cJSON_GetObjectItem(tc.extra, "k")->valueint, 1);
}

Test(config, env_name_rule)
{
    char n[64];
    ukko_config_env_name("cluster.bootstrap.required-contact-point-nr", n, sizeof(n));
    cr_assert_str_eq(n, "UKKO_CLUSTER_BOOTSTRAP_REQUIRED_CONTACT_POINT_NR");
}

Test(config, unknown_key_suggests_the_closest)
{
    write_file("{\"management\": {\"prot\": 1}, \"nope\": {\"x\": 1}}");
    cr_assert_eq(ukko_config_load(cfg, path, NULL), 2);
    assert_error("unknown key \"management.prot\"", "did you mean \"management.port\"", path);
    assert_error("unknown key \"nope\"", "ukko.example.json", NULL);
}

Test(config, every_bad_value_is_one_line)
{
    write_file("{\"t\": {\"count\": 11, \"wait\": 5, \"name\": 3, \"mode\": \"slow\",\n"
               "\"flag\": \"yes\", \"nested\": {\"seeds\": [1]}, \"extra\": []},\n"
               "\"management\": {\"port\": 80.5, \"hostname\": \"\"}}");
    int n = ukko_config_load(cfg, path, NULL);
    cr_assert_eq(n, 9, "expected 9 problems, got %d", n);
    assert_error("t.count = 11", "out of range", "from 1 to 10");
    assert_error("t.wait = 5", "not a duration", "\"5s\"");
    assert_error("t.name = 3", "not a string", NULL);
    assert_error("t.mode = \"slow\"", "\"fast\", \"safe\"", NULL);
    assert_error("t.flag = \"yes\"", "not a boolean", "true or false");
    assert_error("t.nested.seeds = [1]", "not a string", NULL);
    assert_error("t.extra = []", "an object of named settings", NULL);
    assert_error("management.port = 80.5", "not an integer", NULL);
    assert_error("management.hostname = \"\"", "address to listen on", NULL);
    /* Nothing bad was stored: the defaults stand. */
    cr_assert_eq(tc.count, 3);
}

Test(config, list_too_long)
{
    char *env[] = {"UKKO_T_NESTED_SEEDS=a,b,c,d", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 1);
    assert_error("t.nested.seeds", "too many items", "at most 3");
}

Test(config, bad_environment_values_name_the_variable)
{
    char *env[] = {"UKKO_MANAGEMENT_PORT=eighty", "UKKO_T_WAIT=10", "UKKO_T_FLAG=maybe",
                   "UKKO_T_EXTRA={broken", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 4);
    assert_error("management.port = \"eighty\"", "from UKKO_MANAGEMENT_PORT", "not an integer");
    assert_error("t.wait = \"10\"", "from UKKO_T_WAIT", "not a duration");
    assert_error("t.flag = \"maybe\"", "from UKKO_T_FLAG", NULL);
    assert_error("t.extra", "not valid JSON", NULL);
}

Test(config, unknown_environment_variable)
{
    char *env[] = {"UKKO_MANAGEMENT_PROT=1", "UKKO_ZZZZZZZZZZZZZZZZZZZZ=1", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 2);
    assert_error("UKKO_MANAGEMENT_PROT", "did you mean UKKO_MANAGEMENT_PORT", NULL);
    assert_error("UKKO_ZZZZZZZZZZZZZZZZZZZZ", "no config key", NULL);
}

Test(config, object_expected)
{
    write_file("{\"management\": 5}");
    cr_assert_eq(ukko_config_load(cfg, path, NULL), 1);
    assert_error("management", "must be an object", NULL);
}

Test(config, invalid_json_names_line_and_column)
{
    write_file("{\n  \"management\": {\n    \"port\": 8558,,\n  }\n}\n");
    cr_assert_eq(ukko_config_load(cfg, path, NULL), 1);
    assert_error("not valid JSON", "line 3", NULL);
}

Test(config, top_level_must_be_an_object)
{
    write_file("[1, 2]");
    cr_assert_eq(ukko_config_load(cfg, path, NULL), 1);
    assert_error("must hold a JSON object", NULL, NULL);
}

Test(config, missing_file)
{
    cr_assert_eq(ukko_config_load(cfg, "/nonexistent/ukko.json", NULL), 1);
    assert_error("cannot read /nonexistent/ukko.json", "--config", NULL);
}

Test(config, effective_config_round_trips)
{
    char *env[] = {"UKKO_T_WAIT=90s", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 0);
    cJSON *j = ukko_config_to_json(cfg);
    cJSON *t = cJSON_GetObjectItem(j, "t");
    cr_assert_str_eq(cJSON_GetObjectItem(t, "wait")->valuestring, "90s");
    cr_assert_str_eq(cJSON_GetObjectItem(t, "mode")->valuestring, "safe");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "management"), "port")->valueint,
                 8558);
    /* The printed config loads back to the same values. */
    char *text = cJSON_Print(j);
    write_file(text);
    free(text);
    cJSON_Delete(j);
    ukko_config_t *again = ukko_config_new();
    test_cfg_t tc2;
    ukko_node_config_t nc2;
    ukko_config_add(again, keys, sizeof(keys) / sizeof(keys[0]), &tc2);
    ukko_node_config_register(again, &nc2);
    cr_assert_eq(ukko_config_load(again, path, NULL), 0, "reloading: %s",
                 ukko_config_error(again, 0));
    cr_assert_eq(tc2.wait_ms, 90000);
    ukko_config_free(again);
}

Test(config, describe_lists_every_key)
{
    cr_assert_eq(ukko_config_load(cfg, NULL, NULL), 0);
    ukko_buf_t b;
    ukko_buf_init(&b, 0);
    cr_assert_eq(ukko_config_describe(cfg, true, &b), 0);
    cr_assert(strstr(b.data, "| `management.port` | `UKKO_MANAGEMENT_PORT` | `8558` |"));
    cr_assert(strstr(b.data, "`t.nested.seeds`"));
    ukko_buf_reset(&b);
    cr_assert_eq(ukko_config_describe(cfg, false, &b), 0);
    /* The example is itself a valid config. */
    write_file(b.data);
    ukko_buf_destroy(&b);
    ukko_config_t *again = ukko_config_new();
    test_cfg_t tc2;
    ukko_node_config_t nc2;
    ukko_config_add(again, keys, sizeof(keys) / sizeof(keys[0]), &tc2);
    ukko_node_config_register(again, &nc2);
    cr_assert_eq(ukko_config_load(again, path, NULL), 0, "example: %s",
                 ukko_config_error(again, 0));
    ukko_config_free(again);
}

Test(duration, parse_and_format, .timeout = 5)
{
    struct {
        const char *s;
        int64_t ms;
        int rc;
    } cases[] = {{"250ms", 250, 0}, {"5s", 5000, 0},      {"1.5s", 1500, 0}, {"2m", 120000, 0},
                 {"1h", 3600000, 0}, {"0s", 0, 0},       {"5", 0, -1},      {"s", 0, -1},
                 {"-5s", 0, -1},     {"5 s", 0, -1},     {"1.0005s", 0, -1}, {"", 0, -1},
                 {"5d", 0, -1},      {"nan s", 0, -1},   {"1e30h", 0, -1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        int rc = ukko_parse_duration(cases[i].s, &ms);
        cr_assert_eq(rc < 0 ? -1 : 0, cases[i].rc, "\"%s\": rc %d", cases[i].s, rc);
        if (rc == 0)
            cr_assert_eq(ms, cases[i].ms, "\"%s\" -> %lld", cases[i].s, (long long)ms);
    }
    char out[32];
    ukko_format_duration(250, out, sizeof(out));
    cr_assert_str_eq(out, "250ms");
    ukko_format_duration(5000, out, sizeof(out));
    cr_assert_str_eq(out, "5s");
    ukko_format_duration(120000, out, sizeof(out));
    cr_assert_str_eq(out, "2m");
    ukko_format_duration(1500, out, sizeof(out));
    cr_assert_str_eq(out, "1500ms");
}
