/* metrics.c: the ukko_kafka_* families of /metrics: per partition this node
 * owns (records processed and failed, committed offset, lag from the
 * broker's high watermark, in flight, paused), per type (commits and their
 * latency, hand-offs, dead letters, key/partition mismatches) and the
 * producer. Loop thread; the producer's counts from handlers are atomics. */
#include "streams_internal.h"

#include <stdio.h>

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
    {"ukko_kafka_lag", "gauge",
     "The partition's high watermark minus the committed offset (records not yet done)."},
    {"ukko_kafka_in_flight", "gauge",
     "Records handed to entities and not yet in the acknowledged prefix."},
    {"ukko_kafka_partition_paused", "gauge",
     "1 while fetching is paused (backpressure or hand-off)."},
};

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
            /* The cached watermarks of the last fetch response: no request. */
            if (committed < 0 ||
                rd_kafka_get_watermark_offsets(src->rk, src->topic, p->partition, &lo, &hi) ||
                hi < 0)
                continue;
            v = (double)(hi > committed ? hi - committed : 0);
            break;
        }
        case 6: v = (double)streams__wm_open(&p->wm); break;
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
        const char *hk[] = {"type", "topic", "le"};
        for (int b = 0; b < 8; b++) {
            char le[16];
            snprintf(le, sizeof(le), "%g", streams__latency_bounds_s[b]);
            const char *hv[] = {s->type, s->topic, le};
            ukko_prom_sample(out, "ukko_kafka_commit_latency_seconds_bucket", hk, hv, 3,
                             (double)s->committer.latency_buckets[b]);
        }
        const char *hv[] = {s->type, s->topic, "+Inf"};
        ukko_prom_sample(out, "ukko_kafka_commit_latency_seconds_bucket", hk, hv, 3,
                         (double)s->committer.commits);
        const char *tv[] = {s->type, s->topic};
        ukko_prom_sample(out, "ukko_kafka_commit_latency_seconds_sum", tk, tv, 2,
                         s->committer.latency_sum_s);
        ukko_prom_sample(out, "ukko_kafka_commit_latency_seconds_count", tk, tv, 2,
                         (double)s->committer.commits);
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
