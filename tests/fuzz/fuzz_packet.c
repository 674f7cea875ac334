/* fuzz_packet: the gossip packet decoder (cluster/codec.c) and what stands
 * behind it, on arbitrary bytes as anyone on the network could send them.
 * The first byte picks the path: a sealed packet through cluster__open with a
 * known key (must refuse what the key did not seal), a gossip body through
 * the membership core (insecure mode: no key in the way), or a sync body
 * served and replied to. Invariants: the reader stays within the bytes, the
 * member table stays within its cap, and nothing leaks. */
#include "cluster_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t clock_ms = 1000;
static int64_t f_now(void *ud)
{
    (void)ud;
    return clock_ms;
}
static int64_t f_wall(void *ud)
{
    (void)ud;
    return 1700000000000LL;
}
static void f_random(void *ud, void *p, size_t n)
{
    (void)ud;
    memset(p, 0x5a, n);
}
static void f_send(void *ud, const cluster__addr_t *to, const uint8_t *b, size_t n)
{
    (void)ud, (void)to, (void)b, (void)n;
}
static void f_sync(void *ud, const cluster__addr_t *to, const uint8_t *b, size_t n)
{
    (void)ud, (void)to, (void)b, (void)n;
}

static cluster__mship_t *core;
static cluster__ids_t *ids;
static cluster__keyring_t kr;

static void init(void)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
    cluster__params_t p;
    cluster__params_default(&p);
    p.max_members = 64;
    p.max_sync_bytes = 1 << 20;
    ids = cluster__ids_new();
    cluster__env_t env = {NULL, f_now, f_wall, f_random, f_send, f_sync, NULL};
    cluster__addr_t self;
    cluster__addr_parse("127.0.0.1:7355", 7355, &self);
    core = cluster__mship_new(&p, &env, ids, &self, "fuzz", NULL, 0);
    cluster__mship_start(core); /* forms: a member, so updates are applied */
    static const char ring[] = "[\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"]";
    char why[128];
    cluster__keyring_parse(&kr, ring, sizeof(ring) - 1, why, sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!core)
        init();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    clock_ms += 37;
    if (mode % 3 == 0) {
        uint8_t *out = malloc(size ? size : 1);
        int n = cluster__open(&kr, "ukko", data, size, out, size);
        if (n >= 0)
            cluster__mship_recv(core, out, (size_t)n);
        free(out);
    } else if (mode % 3 == 1) {
        /* exact-size copy: any over-read is an ASan report */
        uint8_t *copy = malloc(size ? size : 1);
        memcpy(copy, data, size);
        ukko_wire_hdr_t h;
        if (ukko_wire_decode_header(copy, size, &h) == 0) {
            char roles[UKKO_WIRE_ROLES_BUF];
            size_t off = sizeof(ukko_wire_header_t);
            ukko_wire_msg_t m;
            while (ukko_wire_next(copy, size, &off, &m, roles, sizeof(roles)) > 0)
                if (off > size)
                    abort();
        }
        cluster__mship_recv(core, copy, size);
        cluster__mship_tick(core);
        free(copy);
    } else {
        uint8_t *copy = malloc(size ? size : 1);
        memcpy(copy, data, size);
        ukko_buf_t out;
        ukko_buf_init(&out, 1 << 20);
        cluster__mship_sync_serve(core, copy, size, &out);
        cluster__mship_sync_push(core, copy, size);
        ukko_buf_destroy(&out);
        free(copy);
    }
    if (cluster__mship_count(core) > 64)
        abort(); /* the member cap held */
    return 0;
}
