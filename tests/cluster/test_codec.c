/* Tests cluster/codec.c: every message round-trips, and truncated, garbled
 * or oversized input is refused without reading past the end. */
#include "cluster_internal.h"

#include <criterion/criterion.h>
#include <string.h>

static cluster__addr_t addr(const char *s)
{
    cluster__addr_t a;
    cr_assert_eq(cluster__addr_parse(s, 7355, &a), 0, "parse %s", s);
    return a;
}

static size_t build(uint8_t *buf, size_t cap)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, buf, cap);
    ukko_wire_hdr_t h = {.kind = UKKO_WIRE_GOSSIP, .flags = UKKO_WIRE_H_MEMBER,
                         .from = addr("127.0.1.1:7355"), .digest = 0x1122334455667788ULL};
    memset(h.uid, 0xab, sizeof(h.uid));
    ukko_wire_put_header(&w, &h);
    uint8_t uid[16];
    memset(uid, 7, sizeof(uid));
    cluster__addr_t b = addr("[::1]:9000"), c = addr("10.0.0.3:7355");
    ukko_wire_put_ping(&w, 42, uid, false, 0);
    ukko_wire_put_ping(&w, 43, uid, true, 9);
    ukko_wire_put_indirect(&w, 44, &b, uid, true);
    ukko_wire_put_ack(&w, UKKO_MSG_ACK, 45);
    ukko_wire_put_ack(&w, UKKO_MSG_NACK, 46);
    ukko_wire_put_node(&w, UKKO_MSG_ALIVE, &c, uid, 5, UKKO_MEMBER_UP, 1700000000123LL,
                       "backend,kafka", 0);
    ukko_wire_put_accuse(&w, UKKO_MSG_SUSPECT, &c, uid, 6, &b);
    ukko_wire_put_accuse(&w, UKKO_MSG_DEAD, &c, uid, 7, &b);
    ukko_wire_put_node(&w, UKKO_MSG_STATE, &c, uid, 8, UKKO_MEMBER_LEAVING, 5, NULL,
                       CLUSTER__SUSPECT);
    cr_assert(!w.overflow);
    return w.len;
}

Test(codec, header_layout_is_pinned, .timeout = 10)
{
    cr_assert_eq(sizeof(ukko_wire_header_t), 44);
    cr_assert_eq(sizeof(ukko_wire_envelope_t), 16);
    uint8_t buf[2048];
    build(buf, sizeof(buf));
    cr_assert_eq(buf[0], UKKO_WIRE_GOSSIP, "kind at byte 0");
    cr_assert_eq(buf[2], 7355 >> 8, "port big-endian at byte 2");
    cr_assert_eq(buf[3], 7355 & 255);
    cr_assert_eq(buf[4 + 15], 1, "last byte of 127.0.1.1 at 19");
    cr_assert_eq(buf[20], 0xab, "uid at 20");
    cr_assert_eq(buf[36], 0x11, "digest big-endian at 36");
}

Test(codec, every_message_round_trips, .timeout = 10)
{
    uint8_t buf[2048];
    size_t n = build(buf, sizeof(buf));
    ukko_wire_hdr_t h;
    cr_assert_eq(ukko_wire_decode_header(buf, n, &h), 0);
    cr_assert_eq(h.kind, UKKO_WIRE_GOSSIP);
    cr_assert_eq(h.flags, UKKO_WIRE_H_MEMBER);
    cr_assert_eq(h.digest, 0x1122334455667788ULL);
    cr_assert_eq(h.from.port, 7355);
    char roles[UKKO_WIRE_ROLES_BUF];
    size_t off = sizeof(ukko_wire_header_t);
    ukko_wire_msg_t m;
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert_eq(m.type, UKKO_MSG_PING);
    cr_assert_eq(m.seq, 42);
    cr_assert_not(m.suspect);
    cr_assert_eq(m.uid[3], 7);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.suspect && m.inc == 9, "a ping says the prober suspects us at inc 9");
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert_eq(m.type, UKKO_MSG_INDIRECT);
    cr_assert(m.nack && m.seq == 44 && m.addr.port == 9000);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_ACK && m.seq == 45);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_NACK && m.seq == 46);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert_eq(m.type, UKKO_MSG_ALIVE);
    cr_assert(m.inc == 5 && m.status == UKKO_MEMBER_UP && m.started_ms == 1700000000123LL);
    cr_assert_str_eq(m.roles, "backend,kafka");
    char a[64];
    cluster__addr_format(&m.addr, a, sizeof(a));
    cr_assert_str_eq(a, "10.0.0.3:7355");
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_SUSPECT && m.inc == 6 && m.from.port == 9000);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_DEAD && m.inc == 7);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_STATE && m.live == CLUSTER__SUSPECT &&
              m.status == UKKO_MEMBER_LEAVING && m.roles == NULL);
    cr_assert_eq(ukko_wire_next(buf, n, &off, &m, roles, sizeof(roles)), 0, "end of body");
}

Test(codec, every_truncation_is_refused_or_ends_cleanly, .timeout = 30)
{
    uint8_t buf[2048];
    size_t n = build(buf, sizeof(buf));
    char roles[UKKO_WIRE_ROLES_BUF];
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf, cut);
        ukko_wire_hdr_t h;
        if (ukko_wire_decode_header(copy, cut, &h) == 0) {
            size_t off = sizeof(ukko_wire_header_t);
            ukko_wire_msg_t m;
            int rc, count = 0;
            while ((rc = ukko_wire_next(copy, cut, &off, &m, roles, sizeof(roles))) > 0)
                count++;
            cr_assert(rc == 0 || rc == UKKO_EPROTO);
            cr_assert(count <= 9);
        } else {
            cr_assert_lt(cut, sizeof(ukko_wire_header_t), "a whole header decodes (cut %zu)",
                         cut);
        }
        free(copy);
    }
}

Test(codec, bad_fields_are_refused, .timeout = 10)
{
    uint8_t buf[2048];
    size_t n = build(buf, sizeof(buf));
    ukko_wire_hdr_t h;
    buf[0] = 99;
    cr_assert_eq(ukko_wire_decode_header(buf, n, &h), UKKO_EPROTO, "unknown body kind");
    n = build(buf, sizeof(buf));
    buf[2] = buf[3] = 0;
    cr_assert_eq(ukko_wire_decode_header(buf, n, &h), UKKO_EPROTO, "port 0");
    /* an ALIVE whose role count exceeds the cap */
    ukko_wire_w_t w;
    uint8_t b2[256];
    ukko_wire_w_init(&w, b2, sizeof(b2));
    uint8_t uid[16] = {1};
    cluster__addr_t c = addr("10.0.0.3:7355");
    ukko_wire_put_node(&w, UKKO_MSG_ALIVE, &c, uid, 1, UKKO_MEMBER_UP, 0, "x", 0);
    b2[3 + 18 + 16 + 4 + 1 + 8] = 200; /* role count */
    size_t off = 0;
    ukko_wire_msg_t m;
    char roles[UKKO_WIRE_ROLES_BUF];
    cr_assert_eq(ukko_wire_next(b2, w.len, &off, &m, roles, sizeof(roles)), UKKO_EPROTO);
    /* a status past Removed */
    ukko_wire_w_init(&w, b2, sizeof(b2));
    ukko_wire_put_node(&w, UKKO_MSG_ALIVE, &c, uid, 1, UKKO_MEMBER_UP, 0, NULL, 0);
    b2[3 + 18 + 16 + 4] = 7;
    off = 0;
    cr_assert_eq(ukko_wire_next(b2, w.len, &off, &m, roles, sizeof(roles)), UKKO_EPROTO);
}

Test(codec, unknown_messages_are_skipped, .timeout = 10)
{
    uint8_t b[16] = {200, 0, 2, 9, 9, UKKO_MSG_ACK, 0, 4, 0, 0, 0, 5};
    size_t off = 0;
    ukko_wire_msg_t m;
    char roles[UKKO_WIRE_ROLES_BUF];
    cr_assert_eq(ukko_wire_next(b, 12, &off, &m, roles, sizeof(roles)), 1);
    cr_assert_eq(m.type, 200, "an unknown type comes back to be skipped");
    cr_assert_eq(ukko_wire_next(b, 12, &off, &m, roles, sizeof(roles)), 1);
    cr_assert(m.type == UKKO_MSG_ACK && m.seq == 5, "and the next message is read");
}

Test(codec, writer_never_writes_half_a_message, .timeout = 10)
{
    uint8_t buf[50];
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, buf, sizeof(buf));
    ukko_wire_put_ack(&w, UKKO_MSG_ACK, 1);
    size_t before = w.len;
    uint8_t uid[16] = {0};
    cluster__addr_t c = addr("10.0.0.3:7355");
    ukko_wire_put_node(&w, UKKO_MSG_ALIVE, &c, uid, 1, 2, 0, NULL, 0);
    cr_assert(w.overflow);
    cr_assert_eq(w.len, before, "an ALIVE that does not fit leaves the packet as it was");
}

Test(codec, addresses_parse_and_order, .timeout = 10)
{
    cluster__addr_t a;
    cr_assert_eq(cluster__addr_parse("127.0.1.2", 7355, &a), 0);
    cr_assert_eq(a.port, 7355);
    cr_assert_eq(cluster__addr_parse("[fe80::1]:80", 7355, &a), 0);
    cr_assert_eq(a.port, 80);
    cr_assert_neq(cluster__addr_parse("127.0.0.1:0", 7355, &a), 0);
    cr_assert_neq(cluster__addr_parse("127.0.0.1:99999", 7355, &a), 0);
    cr_assert_neq(cluster__addr_parse("not-an-address", 7355, &a), 0);
    cluster__addr_t x = addr("127.0.1.1:7355"), y = addr("127.0.1.2:7000");
    cr_assert_lt(cluster__addr_cmp(&x, &y), 0, "address bytes first, then port");
}
