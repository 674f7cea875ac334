/* Tests of cluster/sharding_wire.c: murmur2 and ukko_shard_of against
 * Kafka's Java test vectors (UtilsTest.testMurmur2, and the partition the
 * Java default partitioner picks) and against librdkafka's
 * rd_kafka_msg_partitioner_murmur2 on many keys; every frame encoded and
 * decoded back; truncated and corrupted frames refused. */
#include "sharding_internal.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

Test(sharding_wire, murmur2_matches_kafka_java_vectors, .timeout = 10)
{
    static const struct {
        const char *key;
        int32_t hash;
    } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cr_expect_eq(sh_murmur2(v[i].key, strlen(v[i].key)), v[i].hash,
                     "murmur2(\"%s\") = %d, Kafka's Java client says %d", v[i].key,
                     sh_murmur2(v[i].key, strlen(v[i].key)), v[i].hash);
    /* toPositive(murmur2("foobar")) % 50, as Kafka's partitioner computes */
    cr_expect_eq(ukko_shard_of("foobar", 6, 50), 16);
    cr_expect_eq(ukko_shard_of("", 0, 1), 0);
}

Test(sharding_wire, shard_of_matches_librdkafka_murmur2_partitioner, .timeout = 30)
{
    char key[64];
    for (int32_t parts = 1; parts <= 64; parts += 7) {
        for (int i = 0; i < 2000; i++) {
            int len = snprintf(key, sizeof(key), "customer-%d-%x", i, i * 2654435761u);
            int32_t want = rd_kafka_msg_partitioner_murmur2(NULL, key, (size_t)len, parts, NULL,
                                                            NULL);
            int32_t got = ukko_shard_of(key, (size_t)len, parts);
            if (got != want)
                cr_assert_fail("key \"%s\" over %d shards: ukko_shard_of %d, librdkafka %d", key, parts,
                         got, want);
        }
    }
    /* every length mod 4, binary bytes included */
    uint8_t bin[16];
    for (size_t len = 1; len <= sizeof(bin); len++) {
        for (size_t k = 0; k < len; k++)
            bin[k] = (uint8_t)(0xf0 + k * 37);
        cr_expect_eq(ukko_shard_of(bin, len, 12),
                     rd_kafka_msg_partitioner_murmur2(NULL, bin, len, 12, NULL, NULL),
                     "binary key of %zu bytes", len);
    }
}

static sh_node_t node_n(int i)
{
    sh_node_t n;
    memset(&n, 0, sizeof(n));
    char s[32];
    snprintf(s, sizeof(s), "127.0.5.%d:7355", i);
    cluster__addr_parse(s, 7355, &n.addr);
    memset(n.uid, i, sizeof(n.uid));
    return n;
}

Test(sharding_wire, table_round_trip, .timeout = 10)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    sh_node_t from = node_n(1), a = node_n(2), c = node_n(3);
    sh_put_header(&b, UKKO_WIRE_SH_TABLE, &from, 7);
    sh_put_u64(&b, 42);
    sh_put_name(&b, "counter");
    sh_put_u32(&b, 3);
    sh_put_u16(&b, 2);
    sh_put_node(&b, &a);
    sh_put_node(&b, &c);
    sh_put_u16(&b, 1), sh_put_u8(&b, 0);
    sh_put_u16(&b, 0xffff), sh_put_u8(&b, 0);
    sh_put_u16(&b, 0), sh_put_u8(&b, SH_TABLE_MOVING);
    sh_frame_t f;
    cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    cr_expect_eq(f.kind, UKKO_WIRE_SH_TABLE);
    cr_expect_eq(f.version, 42);
    cr_expect_str_eq(f.type, "counter");
    cr_expect_eq(f.nshards, 3);
    cr_expect_eq(f.nnodes, 2);
    sh_node_t got;
    sh_frame_node(&f, 1, &got);
    cr_expect(cluster__addr_eq(&got.addr, &c.addr));
    cr_expect_eq(memcmp(got.uid, c.uid, CLUSTER__UID_LEN), 0);
    uint16_t o;
    uint8_t fl;
    sh_frame_owner(&f, 2, &o, &fl);
    cr_expect_eq(o, 0);
    cr_expect_eq(fl, SH_TABLE_MOVING);
    sh_frame_owner(&f, 1, &o, &fl);
    cr_expect_eq(o, 0xffff);
    /* Every truncation is refused, and an owner index past the nodes too. */
    for (size_t n = 0; n < b.len; n++)
        cr_expect_neq(sh_decode((uint8_t *)b.data, n, &f), 0, "truncated to %zu bytes", n);
    b.data[b.len - 3] = 0x00, b.data[b.len - 2] = 0x05;
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    ukko_buf_destroy(&b);
}

Test(sharding_wire, tell_round_trip, .timeout = 10)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    sh_node_t from = node_n(1);
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    cr_assert_eq(sh_put_tell(&b, &from, "orders", 11, 1, 7, "customer-9", 10, tp, "hello", 5), 0);
    sh_frame_t f;
    cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    cr_expect_eq(f.kind, UKKO_WIRE_SH_TELL);
    cr_expect_str_eq(f.type, "orders");
    cr_expect_eq(f.shard, 11);
    cr_expect_eq(f.hop, 1);
    cr_expect_eq(f.msg_type, 7);
    cr_expect_eq(f.id_len, 10);
    cr_expect_eq(memcmp(f.id, "customer-9", 10), 0);
    cr_expect_str_eq(f.traceparent, tp);
    cr_expect_eq(f.len, 5);
    cr_expect_eq(memcmp(f.data, "hello", 5), 0);
    for (size_t n = 0; n < b.len; n++)
        cr_expect_neq(sh_decode((uint8_t *)b.data, n, &f), 0, "truncated to %zu bytes", n);
    /* a bad type name */
    size_t name_at = sizeof(ukko_wire_header_t) + 1;
    b.data[name_at] = 'O';
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    /* too long an id is refused by the writer */
    char big[SH_MAX_ID + 2];
    memset(big, 'x', sizeof(big));
    ukko_buf_reset(&b);
    cr_expect_eq(sh_put_tell(&b, &from, "orders", 1, 0, 1, big, sizeof(big), NULL, "", 0),
                 UKKO_EINVAL);
    ukko_buf_destroy(&b);
}

Test(sharding_wire, report_round_trip, .timeout = 10)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    sh_node_t from = node_n(4);
    sh_put_header(&b, UKKO_WIRE_SH_REPORT, &from, 0);
    sh_put_u64(&b, 99);
    sh_put_u8(&b, SH_REPORT_SEEN_TABLE);
    sh_put_u32(&b, 2);
    sh_put_name(&b, "a"), sh_put_u32(&b, 3), sh_put_u8(&b, SH_RUNNING);
    sh_put_name(&b, "b.c"), sh_put_u32(&b, 0), sh_put_u8(&b, SH_STOPPING);
    sh_frame_t f;
    cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    cr_expect_eq(f.version, 99);
    cr_expect_eq(f.nentries, 2);
    size_t off = 0;
    char t[SH_MAX_NAME + 1];
    int32_t s;
    uint8_t st;
    cr_assert_eq(sh_report_next(&f, &off, t, &s, &st), 1);
    cr_expect_str_eq(t, "a");
    cr_expect_eq(s, 3);
    cr_expect_eq(st, SH_RUNNING);
    cr_assert_eq(sh_report_next(&f, &off, t, &s, &st), 1);
    cr_expect_str_eq(t, "b.c");
    cr_expect_eq(st, SH_STOPPING);
    cr_expect_eq(sh_report_next(&f, &off, t, &s, &st), 0);
    /* a count larger than the entries */
    b.data[sizeof(ukko_wire_header_t) + 8 + 1 + 3] = 3;
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    ukko_buf_destroy(&b);
}

Test(sharding_wire, small_frames_and_unknown_kinds, .timeout = 10)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 4096);
    sh_node_t from = node_n(5);
    uint8_t kinds[] = {UKKO_WIRE_SH_STOPPED, UKKO_WIRE_SH_FENCE, UKKO_WIRE_SH_REFUSED};
    for (size_t i = 0; i < sizeof(kinds); i++) {
        ukko_buf_reset(&b);
        sh_put_header(&b, kinds[i], &from, 0);
        sh_put_name(&b, "counter");
        sh_put_u32(&b, 5);
        sh_frame_t f;
        cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
        cr_expect_eq(f.shard, 5);
        sh_put_u8(&b, 0); /* a trailing byte is a broken frame */
        cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    }
    ukko_buf_reset(&b);
    sh_put_header(&b, UKKO_WIRE_SH_HANDOFF, &from, 0);
    sh_put_name(&b, "counter");
    sh_put_u32(&b, SH_MAX_SHARDS); /* past the cap */
    sh_put_u16(&b, 0);
    sh_frame_t f;
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    ukko_buf_reset(&b);
    sh_put_header(&b, UKKO_WIRE_SH_GOING_AWAY, &from, 0);
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    b.data[0] = 99;
    cr_expect_eq(sh_decode((uint8_t *)b.data, b.len, &f), UKKO_EPROTO);
    ukko_buf_destroy(&b);
}

Test(sharding_wire, numbered_frames_carry_one_body, .timeout = 10)
{
    ukko_buf_t inner, b;
    ukko_buf_init(&inner, 4096);
    ukko_buf_init(&b, 8192);
    sh_node_t from = node_n(6);
    cr_assert_eq(sh_put_tell(&inner, &from, "orders", 3, 0, 1, "c-1", 3, NULL, "x", 1), 0);
    sh_put_header(&b, UKKO_WIRE_SH_SEQ, &from, 0);
    sh_put_u64(&b, 77);
    ukko_buf_append(&b, inner.data, inner.len);
    sh_frame_t f, g;
    cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    cr_expect_eq(f.kind, UKKO_WIRE_SH_SEQ);
    cr_expect_eq(f.version, 77);
    cr_assert_eq(f.inner_len, inner.len);
    cr_assert_eq(sh_decode(f.inner, f.inner_len, &g), 0);
    cr_expect_eq(g.kind, UKKO_WIRE_SH_TELL);
    cr_expect_eq(g.shard, 3);
    /* a SEQ in a SEQ, or an empty one, is refused */
    ukko_buf_t nested;
    ukko_buf_init(&nested, 16384);
    sh_put_header(&nested, UKKO_WIRE_SH_SEQ, &from, 0);
    sh_put_u64(&nested, 78);
    ukko_buf_append(&nested, b.data, b.len);
    cr_expect_eq(sh_decode((uint8_t *)nested.data, nested.len, &f), UKKO_EPROTO);
    cr_expect_eq(sh_decode((uint8_t *)b.data, sizeof(ukko_wire_header_t) + 8, &f), UKKO_EPROTO);
    /* an ACK is a number */
    ukko_buf_reset(&b);
    sh_put_header(&b, UKKO_WIRE_SH_ACK, &from, 0);
    sh_put_u64(&b, 77);
    cr_assert_eq(sh_decode((uint8_t *)b.data, b.len, &f), 0);
    cr_expect_eq(f.kind, UKKO_WIRE_SH_ACK);
    cr_expect_eq(f.version, 77);
    ukko_buf_destroy(&inner);
    ukko_buf_destroy(&b);
    ukko_buf_destroy(&nested);
}
