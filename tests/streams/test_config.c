/* Unit: streams/config.c, the kafka.* keys: kafka.properties checked by
 * librdkafka itself with errors that name the property and the way out,
 * properties ukko sets refused with the reason, secrets never shown (in an
 * error, nor by check-config's effective config: node/config.c redacts
 * them), and the cross-key checks of ukko_streams_new. */
#include "streams_internal.h"

#include <criterion/criterion.h>
#include <string.h>

static ukko_config_t *cfg;
static ukko_streams_config_t sc;

static void setup(void)
{
    cfg = ukko_config_new();
    memset(&sc, 0, sizeof(sc));
    cr_assert_eq(ukko_streams_config_register(cfg, &sc), 0);
}

static void teardown(void)
{
    ukko_config_free(cfg);
}

TestSuite(streams_config, .init = setup, .fini = teardown, .timeout = 30);

static int load(const char *env1, const char *env2)
{
    char *envp[] = {(char *)env1, (char *)env2, NULL};
    return ukko_config_load(cfg, NULL, envp);
}

static bool any_error_has(const char *needle)
{
    for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
        if (strstr(ukko_config_error(cfg, i), needle))
            return true;
    return false;
}

static bool any_error_has_secret(void)
{
    return any_error_has("hunter2");
}

Test(streams_config, defaults_load)
{
    cr_assert_eq(load(NULL, NULL), 0);
    cr_assert_eq(sc.commit_max_batch, 1000);
    cr_assert_eq(sc.commit_max_interval_ms, 1000);
    cr_assert_eq(sc.max_retries, 3);
    cr_assert_str_eq(sc.dead_letter_suffix, ".dlq");
    cr_assert(sc.idempotence);
    char err[256];
    cr_assert_eq(streams__config_validate(&sc, err, sizeof(err)), 0, "%s", err);
}

Test(streams_config, an_unknown_property_is_named_with_librdkafkas_reason)
{
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"sasl.password\":\"hunter2\",\"bogus.prop\":1}",
                      NULL),
                 1);
    cr_assert(any_error_has("\"bogus.prop\": No such configuration property"), "%s",
              ukko_config_error(cfg, 0));
    cr_assert(any_error_has("CONFIGURATION.md"), "the way out is named: %s",
              ukko_config_error(cfg, 0));
    cr_assert(!any_error_has_secret(), "the password must not be shown: %s",
              ukko_config_error(cfg, 0));
}

Test(streams_config, a_secret_refused_by_librdkafka_is_not_shown)
{
    /* ssl.key.password is known; a value librdkafka refuses would be echoed
     * by its error text, so ukko words it itself. An object is refused by
     * our own check: the name, never the value. */
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"sasl.password\":{\"x\":\"hunter2\"}}", NULL), 1);
    cr_assert(any_error_has("\"sasl.password\" must be a string"), "%s",
              ukko_config_error(cfg, 0));
    cr_assert(!any_error_has_secret(), "%s", ukko_config_error(cfg, 0));
}

Test(streams_config, properties_ukko_sets_are_refused_with_the_reason)
{
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"group.id\":\"mine\"}", NULL), 1);
    cr_assert(any_error_has("the entity type's name"), "%s", ukko_config_error(cfg, 0));
    teardown();
    setup();
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"enable.auto.commit\":true}", NULL), 1);
    cr_assert(any_error_has("at-least-once"), "%s", ukko_config_error(cfg, 0));
}

Test(streams_config, invalid_json_text_is_not_echoed)
{
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"sasl.password\":\"hunter2\",", NULL), 1);
    cr_assert(any_error_has("kafka.properties"), "%s", ukko_config_error(cfg, 0));
    cr_assert(!any_error_has_secret(), "%s", ukko_config_error(cfg, 0));
}

Test(streams_config, the_effective_config_hides_secrets)
{
    cr_assert_eq(load("UKKO_KAFKA_PROPERTIES={\"sasl.password\":\"hunter2\","
                      "\"sasl.username\":\"me\",\"security.protocol\":\"SASL_SSL\"}",
                      NULL),
                 0);
    cJSON *j = ukko_config_to_json(cfg);
    char *text = cJSON_PrintUnformatted(j);
    cr_assert(!strstr(text, "hunter2"), "check-config would print the password: %s", text);
    cr_assert(strstr(text, "\"sasl.username\":\"me\""), "other properties are shown: %s", text);
    cr_assert(strstr(text, "\"sasl.password\""), "the secret's name is still there");
    cJSON_free(text);
    cJSON_Delete(j);
    /* The value itself is kept for librdkafka. */
    char err[512];
    rd_kafka_conf_t *conf = streams__conf_new(&sc, err, sizeof(err));
    cr_assert(conf, "%s", err);
    char v[64];
    size_t vlen = sizeof(v);
    cr_assert_eq(rd_kafka_conf_get(conf, "sasl.password", v, &vlen), RD_KAFKA_CONF_OK);
    cr_assert_str_eq(v, "hunter2");
    rd_kafka_conf_destroy(conf);
}

Test(streams_config, the_marks_must_leave_room_to_resume)
{
    cr_assert_eq(load("UKKO_KAFKA_MAX_IN_FLIGHT=100", "UKKO_KAFKA_RESUME_IN_FLIGHT=100"), 0);
    char err[512];
    cr_assert_lt(streams__config_validate(&sc, err, sizeof(err)), 0);
    cr_assert(strstr(err, "kafka.resume-in-flight") && strstr(err, "kafka.max-in-flight"), "%s",
              err);
}

Test(streams_config, a_bad_suffix_is_refused)
{
    cr_assert_eq(load("UKKO_KAFKA_DEAD_LETTER_TOPIC_SUFFIX=/dlq", NULL), 1);
    cr_assert(any_error_has("kafka.dead-letter-topic-suffix"), "%s", ukko_config_error(cfg, 0));
}
