/* config.c: the kafka.* settings: the key table, the check of
 * kafka.properties against librdkafka itself, and the librdkafka conf every
 * handle starts from. Main thread at start; the log callback on librdkafka's
 * threads. Invariant: no secret property's value reaches a log line or an
 * error message. */
#include "streams_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Properties ukko sets itself, and why a user cannot. */
static const struct {
    const char *name;
    const char *why;
} managed[] = {
    {"group.id", "ukko sets it to the entity type's name (one offset group per type)"},
    {"bootstrap.servers", "set kafka.bootstrap-servers instead"},
    {"metadata.broker.list", "set kafka.bootstrap-servers instead"},
    {"enable.auto.commit", "ukko commits only what handlers acknowledged (at-least-once)"},
    {"enable.auto.offset.store", "ukko stores offsets itself, after acknowledgements"},
    {"queued.max.messages.kbytes", "set kafka.prefetch.max-kbytes instead"},
    {"queued.min.messages", "set kafka.prefetch.min-messages instead"},
    {"max.partition.fetch.bytes", "set kafka.fetch.partition-max-bytes instead"},
    {"enable.idempotence", "set kafka.producer.idempotence instead"},
    {"group.protocol.type", "ukko assigns partitions itself, with no consumer group protocol"},
    {"partition.assignment.strategy",
     "ukko assigns partitions itself, with no consumer group protocol"},
};

bool streams__secret_property(const char *name)
{
    /* sasl.password, ssl.key.password, ssl.keystore.password,
     * sasl.oauthbearer.client.secret, ssl.key.pem, ssl.certificate.pem... */
    return strstr(name, "password") || strstr(name, "secret") || strstr(name, ".pem") ||
           strstr(name, "sasl.oauthbearer.config") || strstr(name, "token");
}

/* A property's value as librdkafka wants it: a string, or a number or bool
 * written out. Returns false for objects, arrays and null. */
static bool value_text(const cJSON *v, char *out, size_t outlen)
{
    if (cJSON_IsString(v))
        snprintf(out, outlen, "%s", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(out, outlen, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble)
        snprintf(out, outlen, "%lld", (long long)v->valuedouble);
    else if (cJSON_IsNumber(v))
        snprintf(out, outlen, "%g", v->valuedouble);
    else
        return false;
    return true;
}

/* Sets one property of kafka.properties on conf; on failure writes why
 * (the property named, a secret's value never shown). */
static int set_property(rd_kafka_conf_t *conf, const cJSON *item, char *why, size_t whylen)
{
    const char *name = item->string;
    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
        if (!strcmp(name, managed[i].name)) {
            snprintf(why, whylen, "\"%s\" cannot be set here: %s", name, managed[i].why);
            return UKKO_EINVAL;
        }
    char val[4096];
    if (!value_text(item, val, sizeof(val))) {
        snprintf(why, whylen, "\"%s\" must be a string, number or boolean (as librdkafka's "
                              "CONFIGURATION.md writes it)", name);
        return UKKO_EINVAL;
    }
    char err[512];
    if (rd_kafka_conf_set(conf, name, val, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        if (streams__secret_property(name))
            snprintf(why, whylen, "\"%s\": librdkafka refused its value (not shown: a secret); "
                                  "see librdkafka's CONFIGURATION.md", name);
        else
            snprintf(why, whylen, "\"%s\": %s (librdkafka %s; see its CONFIGURATION.md)", name,
                     err, rd_kafka_version_str());
        return UKKO_EINVAL;
    }
    return 0;
}

static int check_properties(const cJSON *v, char *why, size_t whylen)
{
    if (!cJSON_IsObject(v)) {
        snprintf(why, whylen, "a JSON object of librdkafka properties, e.g. "
                              "{\"security.protocol\": \"SASL_SSL\", \"sasl.mechanisms\": \"PLAIN\"}");
        return UKKO_EINVAL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    for (const cJSON *it = v->child; it && rc == 0; it = it->next)
        rc = set_property(conf, it, why, whylen);
    rd_kafka_conf_destroy(conf);
    return rc;
}

static int check_suffix(const cJSON *v, char *why, size_t whylen)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-';
    if (!ok) {
        snprintf(why, whylen, "1 to 64 of the characters Kafka allows in topic names "
                              "(letters, digits, '.', '_', '-'), e.g. \".dlq\"");
        return UKKO_EINVAL;
    }
    return 0;
}

#define SC(f) offsetof(ukko_streams_config_t, f)
static const ukko_cfg_key_t streams_keys[] = {
    {"kafka.bootstrap-servers", UKKO_CFG_STRING, SC(bootstrap_servers), "\"\"", 0, 0, NULL, NULL,
     "Kafka brokers, \"host:port,host:port\"; \"\" runs no Kafka feed (an application with "
     "topic-fed entity types then refuses to start)."},
    {"kafka.properties", UKKO_CFG_JSON, SC(properties), "{}", 0, 0, NULL, check_properties,
     "librdkafka properties for every Kafka client of the node (security.protocol, sasl.*, "
     "ssl.*, ...), checked by librdkafka at start; secret values are never logged."},
    {"kafka.commit.max-batch", UKKO_CFG_INT, SC(commit_max_batch), "1000", 1, 1000000, NULL,
     NULL, "Commit the acknowledged offsets once this many records were acknowledged."},
    {"kafka.commit.max-interval", UKKO_CFG_DURATION, SC(commit_max_interval_ms), "\"1s\"", 10,
     600000, NULL, NULL,
     "And at least this often while anything was acknowledged: after a crash, at most this "
     "much (or max-batch records) per partition is processed again."},
    {"kafka.max-retries", UKKO_CFG_INT, SC(max_retries), "3", 0, 1000, NULL, NULL,
     "A record whose handler fails is retried this many times, then goes to the dead-letter "
     "topic and its partition moves on."},
    {"kafka.retry-backoff", UKKO_CFG_DURATION, SC(retry_backoff_ms), "\"200ms\"", 1, 600000,
     NULL, NULL, "Wait before the first retry of a failed record (or commit); doubles per retry."},
    {"kafka.retry-backoff-max", UKKO_CFG_DURATION, SC(retry_backoff_max_ms), "\"10s\"", 1,
     3600000, NULL, NULL, "The longest wait between retries."},
    {"kafka.dead-letter-topic-suffix", UKKO_CFG_STRING, SC(dead_letter_suffix), "\".dlq\"", 0,
     0, NULL, check_suffix,
     "Records that failed every retry go to <topic><suffix>, their origin in headers."},
    {"kafka.max-in-flight", UKKO_CFG_INT, SC(max_in_flight), "10000", 1, 1000000, NULL, NULL,
     "Per partition: fetching pauses when this many records are handed to entities and not "
     "yet acknowledged."},
    {"kafka.resume-in-flight", UKKO_CFG_INT, SC(resume_in_flight), "5000", 0, 1000000, NULL,
     NULL, "Per partition: a paused partition resumes when fewer are in flight (below "
     "kafka.max-in-flight)."},
    {"kafka.prefetch.max-kbytes", UKKO_CFG_INT, SC(prefetch_max_kbytes), "65536", 1, 2097151,
     NULL, NULL, "Records fetched ahead and queued, at most this many KiB per consumer "
     "(librdkafka's queued.max.messages.kbytes). Once reached, librdkafka 2.0.2 looks again "
     "only up to 1 s later: give it about a second of your peak input."},
    {"kafka.prefetch.min-messages", UKKO_CFG_INT, SC(prefetch_min_messages), "1000000", 1,
     10000000, NULL, NULL, "Fetch ahead while fewer records than this are queued (librdkafka's "
     "queued.min.messages; in 2.0.2 it counts the whole consumer's queue, not one "
     "partition's). Same 1 s pause once reached: keep it above a second of records."},
    {"kafka.fetch.partition-max-bytes", UKKO_CFG_INT, SC(fetch_partition_max_bytes),
     "1048576", 1024, 1000000000, NULL, NULL,
     "Largest fetch per partition per request (librdkafka's max.partition.fetch.bytes)."},
    {"kafka.producer.idempotence", UKKO_CFG_BOOL, SC(idempotence), "true", 0, 0, NULL, NULL,
     "The producer of handlers' records and dead letters is idempotent (no duplicates from "
     "its own retries, order kept)."},
};

int ukko_streams_config_register(ukko_config_t *cfg, ukko_streams_config_t *sc)
{
    return ukko_config_add(cfg, streams_keys, sizeof(streams_keys) / sizeof(streams_keys[0]), sc);
}

int streams__config_validate(const ukko_streams_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->resume_in_flight >= cfg->max_in_flight) {
        snprintf(err, errlen,
                 "kafka.resume-in-flight = %lld must be below kafka.max-in-flight = %lld (a "
                 "paused partition resumes below the first; lower it, or raise the second)",
                 (long long)cfg->resume_in_flight, (long long)cfg->max_in_flight);
        return UKKO_EINVAL;
    }
    if (cfg->retry_backoff_max_ms < cfg->retry_backoff_ms) {
        snprintf(err, errlen,
                 "kafka.retry-backoff-max (%lld ms) is below kafka.retry-backoff (%lld ms): "
                 "raise the first",
                 (long long)cfg->retry_backoff_max_ms, (long long)cfg->retry_backoff_ms);
        return UKKO_EINVAL;
    }
    return 0;
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *val, char *err,
               size_t errlen)
{
    char e[512];
    if (rd_kafka_conf_set(conf, name, val, e, sizeof(e)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "librdkafka refused %s = %s: %s", name, val, e);
    return UKKO_EINVAL;
}

rd_kafka_conf_t *streams__conf_new(const ukko_streams_config_t *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = set(conf, "bootstrap.servers", cfg->bootstrap_servers ? cfg->bootstrap_servers : "",
                 err, errlen);
    if (rc == 0)
        rc = set(conf, "client.software.name", "ukko", err, errlen);
    if (rc == 0)
        rc = set(conf, "client.software.version", UKKO_VERSION, err, errlen);
    for (const cJSON *it = cfg->properties ? cfg->properties->child : NULL; it && rc == 0;
         it = it->next) {
        char why[768];
        rc = set_property(conf, it, why, sizeof(why));
        if (rc < 0)
            snprintf(err, errlen, "kafka.properties: %s", why);
    }
    if (rc < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, streams__log_cb);
    return conf;
}

void streams__log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. librdkafka's
     * notices are mostly chatter a user does not act on: debug. */
    ukko_log_level_t l = level <= 3 ? UKKO_LOG_ERROR : level == 4 ? UKKO_LOG_WARN : UKKO_LOG_DEBUG;
    if (!ukko_log_enabled(l))
        return;
    ukko_logf(l, "streams",
              UKKO_FIELDS(UKKO_FS("client", rd_kafka_name(rk)), UKKO_FS("facility", fac)),
              "librdkafka: %s", buf);
}
