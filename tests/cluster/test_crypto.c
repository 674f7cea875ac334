/* Tests cluster/crypto.c: the keyring file and AES-256-GCM sealing: keys
 * rotate without a packet lost, anything tampered or foreign is refused. */
#include "cluster_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Three keys, made with `openssl rand -base64 32`. */
#define K1 "cu03czbfN4mVZZQaWJxC2QCOYlPDyGogT4/i+zh65rI="
#define K2 "mba+194CSKdZO8vVPbyiEDDNfdO0G97gRmYskDZqe78="
#define K3 "A8fdcvVMgjHXSE+2+pKj5U74ZyjodDnsFMN0IhW5OpY="

static cluster__keyring_t ring(const char *json)
{
    cluster__keyring_t kr;
    memset(&kr, 0, sizeof(kr));
    char why[256] = "";
    int rc = cluster__keyring_parse(&kr, json, strlen(json), why, sizeof(why));
    cr_assert_eq(rc, 0, "keyring %s: %s", json, why);
    return kr;
}

static size_t seal(const cluster__keyring_t *kr, const char *name, const char *msg, uint8_t *out)
{
    size_t n = 0;
    cr_assert_eq(cluster__seal(kr, name, (const uint8_t *)msg, strlen(msg), out, 512, &n), 0);
    return n;
}

Test(crypto, sealed_packets_open_with_the_key, .timeout = 10)
{
    cluster__keyring_t kr = ring("[\"" K1 "\"]");
    uint8_t pkt[512], body[512];
    size_t n = seal(&kr, "ukko", "hello members", pkt);
    cr_assert_eq(n, 16 + 13 + 16, "envelope + body + tag");
    cr_assert_eq(pkt[3], UKKO_WIRE_F_SEALED);
    cr_assert(memmem(pkt, n, "hello", 5) == NULL, "the body is not in the clear");
    int len = cluster__open(&kr, "ukko", pkt, n, body, sizeof(body));
    cr_assert_eq(len, 13);
    cr_assert_eq(memcmp(body, "hello members", 13), 0);
}

Test(crypto, wrong_key_cluster_name_or_a_flipped_bit_is_refused, .timeout = 10)
{
    cluster__keyring_t kr = ring("[\"" K1 "\"]"), other = ring("[\"" K2 "\"]");
    uint8_t pkt[512], body[512];
    size_t n = seal(&kr, "ukko", "hello members", pkt);
    cr_assert_eq(cluster__open(&other, "ukko", pkt, n, body, sizeof(body)), UKKO_EINVAL,
                 "a node with another key never reads it");
    cr_assert_eq(cluster__open(&kr, "other-cluster", pkt, n, body, sizeof(body)), UKKO_EINVAL,
                 "the cluster name is associated data");
    for (size_t i = 0; i < n; i++) {
        pkt[i] ^= 0x01;
        int rc = cluster__open(&kr, "ukko", pkt, n, body, sizeof(body));
        cr_assert_lt(rc, 0, "flipping a bit of byte %zu must be refused", i);
        pkt[i] ^= 0x01;
    }
    for (size_t cut = 0; cut < n; cut++)
        cr_assert_lt(cluster__open(&kr, "ukko", pkt, cut, body, sizeof(body)), 0,
                     "a truncated packet (%zu bytes) is refused", cut);
}

Test(crypto, rotation_without_downtime, .timeout = 10)
{
    /* Step 1: everyone has [K1]. Step 2: the new key is added second
     * everywhere: [K1, K2]. Step 3: it becomes primary: [K2, K1]. Step 4:
     * the old one goes: [K2]. At every step, nodes on neighbouring steps
     * read each other. */
    cluster__keyring_t s1 = ring("[\"" K1 "\"]"), s2 = ring("[\"" K1 "\",\"" K2 "\"]"),
                       s3 = ring("[\"" K2 "\",\"" K1 "\"]"), s4 = ring("[\"" K2 "\"]");
    cluster__keyring_t *steps[] = {&s1, &s2, &s3, &s4};
    uint8_t pkt[512], body[512];
    for (int i = 0; i < 3; i++) {
        size_t n = seal(steps[i], "ukko", "x", pkt);
        cr_assert_gt(cluster__open(steps[i + 1], "ukko", pkt, n, body, sizeof(body)), 0,
                     "step %d reads step %d", i + 2, i + 1);
        n = seal(steps[i + 1], "ukko", "x", pkt);
        cr_assert_gt(cluster__open(steps[i], "ukko", pkt, n, body, sizeof(body)), 0,
                     "step %d reads step %d", i + 1, i + 2);
    }
    size_t n = seal(&s1, "ukko", "x", pkt);
    cr_assert_lt(cluster__open(&s4, "ukko", pkt, n, body, sizeof(body)), 0,
                 "a retired key is refused");
}

Test(crypto, insecure_and_sealed_never_mix, .timeout = 10)
{
    cluster__keyring_t kr = ring("[\"" K1 "\"]"), open_ring;
    memset(&open_ring, 0, sizeof(open_ring));
    open_ring.insecure = true;
    uint8_t pkt[512], body[512];
    size_t n = seal(&open_ring, "ukko", "plain", pkt);
    cr_assert_eq(pkt[3], 0);
    cr_assert_eq(cluster__open(&open_ring, "ukko", pkt, n, body, sizeof(body)), 5);
    cr_assert_eq(cluster__open(&kr, "ukko", pkt, n, body, sizeof(body)), UKKO_EPROTO,
                 "a node with a keyring refuses unsealed packets");
    n = seal(&kr, "ukko", "sealed", pkt);
    cr_assert_eq(cluster__open(&open_ring, "ukko", pkt, n, body, sizeof(body)), UKKO_EPROTO);
    pkt[2] = 2;
    cr_assert_eq(cluster__open(&kr, "ukko", pkt, n, body, sizeof(body)), UKKO_EPROTO,
                 "another wire version is refused");
}

Test(crypto, bad_keyrings_name_the_problem, .timeout = 10)
{
    const char *bad[] = {"", "{}", "[]", "[\"short\"]", "[1]", "[\"" K1 "\",\"!!\"]",
                         /* 33 bytes of base64 */
                         "[\"q3m4N0uYdJm0b9S9wG8x0q3o7o4G0w1yJ1a8t7m2Zk0A\"]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cluster__keyring_t kr;
        memset(&kr, 0, sizeof(kr));
        char why[256] = "";
        cr_assert_eq(cluster__keyring_parse(&kr, bad[i], strlen(bad[i]), why, sizeof(why)),
                     UKKO_EINVAL, "keyring %s must be refused", bad[i]);
        cr_assert(strstr(why, "openssl rand -base64 32") || strstr(why, "keys"),
                  "the message says how to make a key: %s", why);
        cr_assert_eq(kr.nkeys, 0, "a refused keyring changes nothing");
    }
}

Test(crypto, keyring_file_is_read, .timeout = 10)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/ukko-keyring-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("[\"" K3 "\", \"" K1 "\"]\n", f);
    fclose(f);
    cluster__keyring_t kr;
    memset(&kr, 0, sizeof(kr));
    char why[256];
    int rc = cluster__keyring_load(&kr, path, why, sizeof(why));
    unlink(path);
    cr_assert_eq(rc, 0, "%s", why);
    cr_assert_eq(kr.nkeys, 2);
    cr_assert_eq(cluster__keyring_load(&kr, "/nonexistent/keyring", why, sizeof(why)),
                 UKKO_ENOENT);
    cr_assert_eq(kr.nkeys, 2, "a failed reload keeps the keys in use");
}
