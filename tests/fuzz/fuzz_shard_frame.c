/* fuzz_shard_frame: the decoder of cluster sharding's frames
 * (cluster/sharding_wire.c) on arbitrary bytes, as any holder of the
 * cluster key could send them (a numbered SEQ frame's body decoded in
 * turn), and what reads a decoded frame after it: the nodes and owners of a
 * table, the entries of a report (fed to a shard
 * coordinator), a tell's id and payload. Invariants: nothing is read past
 * the bytes, a frame that decodes can be walked whole, nothing leaks. */
#include "sharding_internal.h"

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
static void f_table(void *ud, uint32_t to, size_t t)
{
    (void)ud, (void)to, (void)t;
}
static void f_handoff(void *ud, uint32_t to, size_t t, int32_t s)
{
    (void)ud, (void)to, (void)t, (void)s;
}
static void f_report_req(void *ud, uint32_t to, uint64_t nonce)
{
    (void)ud, (void)to, (void)nonce;
}

static shard__co_t *co;

static void init(void)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
    shard__co_params_t p = {2000, 1000, 3, 1000};
    shard__co_env_t env = {NULL, f_now, f_table, f_handoff, f_report_req, NULL};
    co = shard__co_new(&p, &env, 1);
    shard__co_add_type(co, "counter", 12);
    shard__co_add_type(co, "orders", 64);
    shard__co_member_t v[2] = {{1, UKKO_MEMBER_UP, true, 11}, {2, UKKO_MEMBER_UP, true, 22}};
    shard__co_view(co, v, 2, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!co)
        init();
    /* exact-size copy: any over-read is an ASan report */
    uint8_t *b = malloc(size ? size : 1);
    memcpy(b, data, size);
    sh_frame_t f;
    clock_ms += 10;
    int rc = sh_decode(b, size, &f);
    if (rc == 0 && f.kind == UKKO_WIRE_SH_SEQ) {
        /* the body a numbered frame carries, decoded on its own */
        sh_frame_t inner;
        rc = sh_decode(f.inner, f.inner_len, &inner);
        if (rc == 0)
            f = inner;
    }
    if (rc == 0) {
        volatile uint32_t sink = 0;
        for (uint32_t i = 0; i < f.nnodes && f.nodes; i++) {
            sh_node_t n;
            sh_frame_node(&f, i, &n);
            sink += n.addr.port;
        }
        for (uint32_t s = 0; s < f.nshards && f.owners; s++) {
            uint16_t o;
            uint8_t fl;
            sh_frame_owner(&f, s, &o, &fl);
            sink += o + fl;
        }
        if (f.kind == UKKO_WIRE_SH_REPORT) {
            shard__co_entry_t e[64];
            size_t k = 0, off = 0;
            char type[SH_MAX_NAME + 1];
            int32_t shard;
            uint8_t st;
            while (sh_report_next(&f, &off, type, &shard, &st) == 1)
                if (k < 64)
                    e[k++] = (shard__co_entry_t){strcmp(type, "orders") == 0, shard, st};
            shard__co_report(co, 2, f.version, f.flags, e, k);
            shard__co_tick(co);
        }
        if (f.kind == UKKO_WIRE_SH_TELL) {
            for (uint16_t i = 0; i < f.id_len; i++)
                sink += (uint8_t)f.id[i];
            for (uint32_t i = 0; i < f.len; i++)
                sink += f.data[i];
            sink += (uint32_t)ukko_shard_of(f.id, f.id_len, 12);
        }
        (void)sink;
    }
    free(b);
    return 0;
}
