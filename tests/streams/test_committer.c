/* Unit: streams/committer.c, when acknowledged offsets are committed: a batch
 * of kafka.commit.max-batch acks, the interval tick, one commit in flight at
 * a time, a hand-off's flush, failures retried, and an offset never sent
 * below one the broker confirmed. The commit mechanism is a recording
 * stand-in; the interval is driven by calling the tick. */
#include "streams_internal.h"

#include <criterion/criterion.h>
#include <string.h>

typedef struct sent {
    int n;
    int32_t partition[8];
    int64_t offset[8];
} sent_t;

static sent_t sends[64];
static int nsends;
static streams__committer_t c;
static streams__cpart_t p0, p1;

static int record_send(void *impl, rd_kafka_topic_partition_list_t *offsets)
{
    (void)impl;
    cr_assert_lt(nsends, 64);
    sent_t *s = &sends[nsends++];
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < offsets->cnt && i < 8; i++) {
        s->partition[s->n] = offsets->elems[i].partition;
        s->offset[s->n++] = offsets->elems[i].offset;
    }
    return 0;
}

static const streams__commit_vt_t vt = {"recording", record_send};

static void setup(void)
{
    nsends = 0;
    streams__committer_opts_t o = {.topic = "orders", .max_batch = 3, .max_interval_ms = 1000,
                                   .retry_backoff_ms = 10, .retry_backoff_max_ms = 100};
    streams__committer_init(&c, &vt, NULL, NULL, &o);
    streams__committer_add(&c, &p0, 0);
    streams__committer_add(&c, &p1, 1);
}

static void teardown(void)
{
    streams__committer_destroy(&c);
}

TestSuite(committer, .init = setup, .fini = teardown, .timeout = 30);

static int64_t offset_of(const sent_t *s, int32_t partition)
{
    for (int i = 0; i < s->n; i++)
        if (s->partition[i] == partition)
            return s->offset[i];
    return -1;
}

Test(committer, a_batch_of_acks_sends_one_commit)
{
    streams__committer_moved(&c, &p0, 11, 1);
    streams__committer_moved(&c, &p0, 12, 1);
    cr_assert_eq(nsends, 0, "2 acks are below max-batch 3: no commit yet");
    streams__committer_moved(&c, &p0, 13, 1);
    cr_assert_eq(nsends, 1, "the 3rd ack sends a commit");
    cr_assert_eq(offset_of(&sends[0], 0), 13, "it carries the latest committable offset 13");
    cr_assert_eq(offset_of(&sends[0], 1), -1, "partition 1 had nothing to commit");
}

Test(committer, the_interval_commits_what_moved_below_the_batch)
{
    streams__committer_tick(&c);
    cr_assert_eq(nsends, 0, "nothing moved: the tick sends nothing");
    streams__committer_moved(&c, &p1, 7, 1);
    streams__committer_tick(&c);
    cr_assert_eq(nsends, 1);
    cr_assert_eq(offset_of(&sends[0], 1), 7);
}

Test(committer, one_commit_in_flight_then_what_moved_meanwhile)
{
    for (int i = 1; i <= 3; i++)
        streams__committer_moved(&c, &p0, 100 + i, 1);
    cr_assert_eq(nsends, 1);
    for (int i = 4; i <= 9; i++)
        streams__committer_moved(&c, &p0, 100 + i, 1);
    cr_assert_eq(nsends, 1, "a commit is in flight: the next waits for its answer");
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(p0.committed, 103, "the broker confirmed 103");
    cr_assert_eq(nsends, 2, "what moved meanwhile (a full batch) goes at once");
    cr_assert_eq(offset_of(&sends[1], 0), 109);
}

Test(committer, never_sends_an_offset_below_the_confirmed_one)
{
    streams__committer_moved(&c, &p0, 50, 3);
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(p0.committed, 50);
    streams__committer_moved(&c, &p0, 40, 3); /* an older offset, however it came */
    streams__committer_tick(&c);
    cr_assert_eq(nsends, 1, "40 is below the committed 50: nothing is sent");
    cr_assert_eq(p0.target, 50, "the target does not go back either");
    streams__committer_moved(&c, &p0, 50, 3);
    cr_assert_eq(nsends, 1, "50 again is not news");
}

Test(committer, a_failed_commit_keeps_the_old_offset_and_is_sent_again)
{
    streams__committer_moved(&c, &p0, 20, 3);
    cr_assert_eq(nsends, 1);
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, NULL);
    cr_assert_eq(p0.committed, -1, "nothing confirmed");
    cr_assert_eq(c.failures, 1);
    streams__committer_tick(&c); /* the retry (a timer in the node) */
    cr_assert_eq(nsends, 2);
    cr_assert_eq(offset_of(&sends[1], 0), 20, "the same offset again");
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(p0.committed, 20);
}

Test(committer, a_partition_error_fails_only_that_partition)
{
    streams__committer_moved(&c, &p0, 30, 1);
    streams__committer_moved(&c, &p1, 40, 2);
    cr_assert_eq(nsends, 1);
    rd_kafka_topic_partition_list_t *r = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(r, "orders", 0)->offset = 30;
    rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(r, "orders", 1);
    e->offset = 40;
    e->err = RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, r);
    rd_kafka_topic_partition_list_destroy(r);
    cr_assert_eq(p0.committed, 30);
    cr_assert_eq(p1.committed, -1, "partition 1's commit failed");
}

static int flushed_calls, flushed_status;
static void on_flushed(void *arg, int status)
{
    (void)arg;
    flushed_calls++;
    flushed_status = status;
}

Test(committer, a_flush_with_nothing_new_answers_at_once)
{
    flushed_calls = 0;
    streams__committer_flush(&c, &p0, on_flushed, NULL);
    cr_assert_eq(flushed_calls, 1);
    cr_assert_eq(flushed_status, 0);
    cr_assert_eq(nsends, 0);
}

Test(committer, a_flush_commits_at_once_and_answers_after_the_broker)
{
    flushed_calls = 0;
    streams__committer_moved(&c, &p0, 77, 1); /* below the batch */
    streams__committer_flush(&c, &p0, on_flushed, NULL);
    cr_assert_eq(nsends, 1, "a hand-off does not wait for the batch or the interval");
    cr_assert_eq(flushed_calls, 0, "not before the broker confirmed");
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(flushed_calls, 1);
    cr_assert_eq(flushed_status, 0);
    cr_assert_eq(p0.committed, 77);
}

Test(committer, a_flush_behind_a_commit_in_flight_waits_for_its_own)
{
    flushed_calls = 0;
    streams__committer_moved(&c, &p0, 10, 3);
    cr_assert_eq(nsends, 1);
    streams__committer_moved(&c, &p0, 15, 1);
    streams__committer_flush(&c, &p0, on_flushed, NULL);
    cr_assert_eq(nsends, 1, "one in flight at a time");
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(flushed_calls, 0, "10 is confirmed but the flush wants 15");
    cr_assert_eq(nsends, 2, "the flush's commit follows at once");
    cr_assert_eq(offset_of(&sends[1], 0), 15);
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(flushed_calls, 1);
}

Test(committer, a_flush_gives_up_after_repeated_failures)
{
    flushed_calls = 0;
    streams__committer_moved(&c, &p0, 5, 1);
    streams__committer_flush(&c, &p0, on_flushed, NULL);
    for (int i = 0; i < 10 && flushed_calls == 0; i++) {
        cr_assert_eq(nsends, i + 1, "each failure sends again (attempt %d)", i + 1);
        streams__committer_result(&c, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, NULL);
    }
    cr_assert_eq(flushed_calls, 1, "the hand-off is answered");
    cr_assert_lt(flushed_status, 0, "with a failure: its next owner repeats from the last commit");
    cr_assert_eq(nsends, 5);
}

Test(committer, a_removed_partition_is_skipped_by_the_answer)
{
    streams__committer_moved(&c, &p0, 9, 3);
    cr_assert_eq(nsends, 1);
    streams__committer_remove(&c, &p0);
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(c.commits, 1);
    streams__committer_add(&c, &p0, 0); /* for teardown's list */
}

/* A hand-off that ended (at its at-once timer) while its commit was in
 * flight, and the same partition started here again: the old commit's
 * answer belongs to the old partition record, not to the new one. */
Test(committer, an_answer_for_a_partition_removed_and_added_again_is_ignored)
{
    static streams__cpart_t again;
    flushed_calls = 0;
    streams__committer_moved(&c, &p0, 9, 1);
    streams__committer_flush(&c, &p0, on_flushed, NULL);
    cr_assert_eq(nsends, 1);
    streams__committer_remove(&c, &p0); /* given up at once, commit still in flight */
    streams__committer_add(&c, &again, 0);
    streams__committer_moved(&c, &again, 4, 1);
    again.flushed = on_flushed; /* the new hand-off waits for its own commit */
    streams__committer_result(&c, RD_KAFKA_RESP_ERR_NO_ERROR, NULL);
    cr_assert_eq(again.committed, -1,
                 "the new record of partition 0 took the old commit's offset (%lld)",
                 (long long)again.committed);
    cr_assert_eq(flushed_calls, 0, "the new hand-off was answered by the old commit");
    again.flushed = NULL;
    cr_assert_eq(nsends, 2, "the new record's own offset is sent next");
    cr_assert_eq(offset_of(&sends[1], 0), 4);
    streams__committer_remove(&c, &again);
    streams__committer_add(&c, &p0, 0); /* for teardown's list */
}
