/* metrics.c: the ukko_kafka_* families of /metrics: per partition this node
 * owns (records processed and failed, committed offset, lag in records from
 * the broker's high watermark and in seconds from the held records'
 * timestamps, in flight, paused), per type (commits and their latency,
 * hand-offs, dead letters, key/partition mismatches) and the producer. Loop
 * thread; the producer's counts from handlers are atomics. */
#include "streams_internal.h"

#include <stdio.h>
#include <time.h>

typedef struct fam {
    const char *name, *type, *help;
} fam_t;

static const fam_t part_fams[] = {
    {"ukko_kafka_records_processed_total", "counter",
     "Records of the partition acknowledged by their handler, since this node took it."},
    {"ukko_kafka_records_failed_total", "counter",
     "Handler attempts that failed (each retry counts)."},
    {"ukko_kafka_records_retried_total", "counter", "Retries scheduled."},
    {"ukko_kafka_dead_letters_total", "counter",
     "Records sent to the dead-letter topic after their last retry."},
    {"ukko_kafka_committed_offset", "gauge",
     "The offset this node last committed for the partition (the next to read)."},
    {"ukko_kafka_lag_records", "gauge",
     "The partition's high watermark minus the offset this node committed (records not yet "
     "committed)."},
    {"ukko_kafka_lag_seconds", "gauge",
     "Age of the oldest record of the partition this node fetched and has not finished (now "
     "minus its Kafka timestamp); 0 when none is held."},
    {"ukko_kafka_in_flight", "gauge",
     "Records handed to entities and not yet in the acknowledged prefix."},
    {"ukko_kafka_partition_paused", "gauge",
     "1 while fetching is paused (backpressure or hand-off)."},
};

/* now minus the earliest Kafka timestamp (CreateTime or LogAppendTime, as
 * the topic says) among the records still held: the records acked but not
 * yet committed are done, and those not fetched yet are younger than any
 * held one while the feed keeps up (see docs/metrics.md). */
static double oldest_age_s(const streams__part_t *p)
{
    int64_t oldest = -1;
    for (const streams__rec_t *r = p->recs; r; r = r->next) {
        if (!r->msg)
            continue;
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(r->msg, &tt);
        if (ts >= 0 && (oldest < 0 || ts < oldest))
            oldest = ts;
    }
    if (oldest < 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double age = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - (double)oldest / 1000.0;
    return age > 0 ? age : 0;
}

/* Nothing committed or seen here yet (a partition just taken, or idle): the
 * consumer's fetch position stands for the committed offset it started
 * from, so an idle partition shows its lag too. Local, no request; -1 when
 * librdkafka has no position yet. */
static int64_t fetch_position(streams__source_t *src, const streams__part_t *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, src->topic, p->partition);
    int64_t pos = -1;
    if (rd_kafka_position(src->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[0].err == 0 &&
        l->elems[0].offset >= 0)
        pos = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return pos;
}

static void part_samples(ukko_buf_t *out, int fam, streams__source_t *src)
{
    for (streams__part_t *p = src->parts; p; p = p->next) {
        if (p->state == STREAMS__PART_GONE)
            continue;
        char part[16];
        snprintf(part, sizeof(part), "%d", p->partition);
        const char *keys[] = {"type", "topic", "partition"};
        const char *vals[] = {src->type, src->topic, part};
        double v;
        int64_t committed = p->cp.committed >= 0 ? p->cp.committed : p->first_offset;
        switch (fam) {
        case 0: v = (double)p->processed; break;
        case 1: v = (double)p->failed; break;
        case 2: v = (double)p->retried; break;
        case 3: v = (double)p->dead_letters; break;
        case 4:
            if (p->cp.committed < 0)
                continue;
            v = (double)p->cp.committed;
            break;
        case 5: {
            int64_t lo = -1, hi = -1;
            if (committed < 0)
                committed = fetch_position(src, p);
            /* The cached watermarks of the last fetch response: no request. */
            if (committed < 0 ||
                rd_kafka_get_watermark_offsets(src->rk, src->topic, p->partition, &lo, &hi) ||
                hi < 0)
                continue;
            v = (double)(hi > committed ? hi - committed : 0);
            break;
        }
        case 6: v = oldest_age_s(p); break;
        case 7: v = (double)streams__wm_open(&p->wm); break;
        default: v = p->paused ? 1 : 0; break;
        }
        ukko_prom_sample(out, part_fams[fam].name, keys, vals, 3, v);
    }
}

void ukko_streams_metrics(ukko_buf_t *out, void *ud)
{
    ukko_streams_t *st = ud;
    if (!st->sources)
        return;
    for (int f = 0; f < (int)(sizeof(part_fams) / sizeof(part_fams[0])); f++) {
        ukko_prom_family(out, part_fams[f].name, part_fams[f].type, part_fams[f].help);
        for (streams__source_t *s = st->sources; s; s = s->next)
            part_samples(out, f, s);
    }

    const char *tk[] = {"type", "topic"};
    ukko_prom_family(out, "ukko_kafka_partitions", "gauge",
                     "Partitions of the type's topic this node owns now.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        int n = 0;
        for (streams__part_t *p = s->parts; p; p = p->next)
            n += p->state != STREAMS__PART_GONE;
        ukko_prom_sample(out, "ukko_kafka_partitions", tk, tv, 2, n);
    }
    ukko_prom_family(out, "ukko_kafka_partitions_paused", "gauge",
                     "Partitions of the type whose fetching is paused now.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        int n = 0;
        for (streams__part_t *p = s->parts; p; p = p->next)
            n += p->state != STREAMS__PART_GONE && p->paused;
        ukko_prom_sample(out, "ukko_kafka_partitions_paused", tk, tv, 2, n);
    }
    ukko_prom_family(out, "ukko_kafka_key_partition_mismatch_total", "counter",
                     "Records whose key hashes (murmur2) to another partition than theirs.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_key_partition_mismatch_total", tk, tv, 2,
                         (double)s->mismatched);
    }
    ukko_prom_family(out, "ukko_kafka_records_unkeyed_total", "counter",
                     "Records with no key (no entity): sent to the dead-letter topic.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_records_unkeyed_total", tk, tv, 2, (double)s->unkeyed);
    }
    ukko_prom_family(out, "ukko_kafka_commits_total", "counter", "Offset commits answered.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_commits_total", tk, tv, 2, (double)s->committer.commits);
    }
    ukko_prom_family(out, "ukko_kafka_commit_failures_total", "counter",
                     "Offset commits that failed (retried).");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_commit_failures_total", tk, tv, 2,
                         (double)s->committer.failures);
    }
    ukko_prom_family(out, "ukko_kafka_commit_latency_seconds", "histogram",
                     "From a commit's send to the broker's answer.");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_histogram(out, "ukko_kafka_commit_latency_seconds", tk, tv, 2,
                            streams__latency_bounds_s, 8, s->committer.latency_buckets,
                            s->committer.commits, s->committer.latency_sum_s);
    }
    ukko_prom_family(out, "ukko_kafka_handoffs_total", "counter",
                     "Shards of the type this node stopped (handed off or at once).");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_handoffs_total", tk, tv, 2, (double)s->handoffs);
    }
    ukko_prom_family(out, "ukko_kafka_handoff_seconds_total", "counter",
                     "Time those stops took, summed (divide by ukko_kafka_handoffs_total).");
    for (streams__source_t *s = st->sources; s; s = s->next) {
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_handoff_seconds_total", tk, tv, 2,
                         (double)s->handoff_ms_sum / 1000.0);
    }

    ukko_prom_family(out, "ukko_kafka_produced_total", "counter",
                     "Records handlers produced (accepted by the producer).");
    ukko_prom_sample(out, "ukko_kafka_produced_total", NULL, NULL, 0,
                     (double)atomic_load_explicit(&st->produced, memory_order_relaxed));
    ukko_prom_family(out, "ukko_kafka_produce_failures_total", "counter",
                     "Records handlers produced that the producer refused or the broker did "
                     "not confirm.");
    ukko_prom_sample(out, "ukko_kafka_produce_failures_total", NULL, NULL, 0,
                     (double)(atomic_load_explicit(&st->produce_failed, memory_order_relaxed) +
                              st->produce_failed_dr));
    ukko_prom_family(out, "ukko_kafka_dead_letter_failures_total", "counter",
                     "Dead letters that could not be produced (retried).");
    ukko_prom_sample(out, "ukko_kafka_dead_letter_failures_total", NULL, NULL, 0,
                     (double)st->dlq_failed);
}
