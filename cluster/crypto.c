/* crypto.c: the keyring (a JSON list of base64 AES-256 keys, the first the
 * primary) and the sealing of every packet and frame with AES-256-GCM
 * through OpenSSL EVP, the envelope and the cluster name as associated data.
 * Any thread, one keyring per thread. Invariant: a body is handed on only
 * after its tag verified under one of the keys. */
#include "cluster_internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cluster__keyring_parse(cluster__keyring_t *kr, const char *text, size_t len, char *why,
                           size_t whylen)
{
    cluster__keyring_t next;
    memset(&next, 0, sizeof(next));
    cJSON *root = cJSON_ParseWithLength(text, len);
    int rc = UKKO_EINVAL;
    if (!root || !cJSON_IsArray(root)) {
        snprintf(why, whylen,
                 "not a JSON list of base64 keys (expected [\"<key>\", ...]; make a key with "
                 "`openssl rand -base64 32`)");
        goto out;
    }
    int n = cJSON_GetArraySize(root);
    if (n == 0 || n > CLUSTER__MAX_KEYS) {
        snprintf(why, whylen, "holds %d keys: allowed 1 to %d (the first is used to send)", n,
                 CLUSTER__MAX_KEYS);
        goto out;
    }
    int i = 0;
    for (const cJSON *it = root->child; it; it = it->next, i++) {
        const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
        size_t sl = s ? strlen(s) : 0;
        /* 32 bytes are 44 base64 characters with one '=' of padding. */
        uint8_t raw[64];
        if (!s || sl != 44 || EVP_DecodeBlock(raw, (const unsigned char *)s, (int)sl) != 33 ||
            s[43] != '=' || s[42] == '=') {
            snprintf(why, whylen,
                     "key %d is not 32 bytes of base64 (44 characters; make one with "
                     "`openssl rand -base64 32`)",
                     i + 1);
            goto out;
        }
        memcpy(next.keys[next.nkeys++], raw, CLUSTER__KEY_LEN);
        OPENSSL_cleanse(raw, sizeof(raw));
    }
    *kr = next;
    rc = 0;
out:
    OPENSSL_cleanse(&next, sizeof(next));
    cJSON_Delete(root);
    return rc;
}

int cluster__keyring_load(cluster__keyring_t *kr, const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot open: %s", ukko_strerror(-errno));
        return UKKO_ENOENT;
    }
    char *buf = malloc(CLUSTER__MAX_KEYRING_BYTES + 1);
    if (!buf) {
        fclose(f);
        snprintf(why, whylen, "out of memory");
        return UKKO_ENOMEM;
    }
    size_t n = fread(buf, 1, CLUSTER__MAX_KEYRING_BYTES + 1, f);
    fclose(f);
    int rc;
    if (n > CLUSTER__MAX_KEYRING_BYTES) {
        snprintf(why, whylen, "larger than %d bytes", CLUSTER__MAX_KEYRING_BYTES);
        rc = UKKO_E2BIG;
    } else {
        rc = cluster__keyring_parse(kr, buf, n, why, whylen);
    }
    OPENSSL_cleanse(buf, n < CLUSTER__MAX_KEYRING_BYTES ? n : CLUSTER__MAX_KEYRING_BYTES);
    free(buf);
    return rc;
}

static void put_envelope(uint8_t *p, uint8_t flags)
{
    p[0] = UKKO_WIRE_MAGIC0;
    p[1] = UKKO_WIRE_MAGIC1;
    p[2] = UKKO_WIRE_VERSION;
    p[3] = flags;
}

/* One AES-256-GCM operation; the associated data is the envelope then the
 * cluster name, so a packet of another cluster with the same key fails. */
static int gcm(bool enc, const uint8_t *key, const uint8_t *env, const char *name,
               const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL, len = 0;
    ok = ok && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc ? 1 : 0);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, UKKO_WIRE_NONCE_LEN, NULL);
    ok = ok && EVP_CipherInit_ex(ctx, NULL, NULL, key, env + 4, enc ? 1 : 0);
    ok = ok && EVP_CipherUpdate(ctx, NULL, &len, env, (int)sizeof(ukko_wire_envelope_t));
    ok = ok && EVP_CipherUpdate(ctx, NULL, &len, (const uint8_t *)name, (int)strlen(name));
    ok = ok && (n == 0 || EVP_CipherUpdate(ctx, out, &len, in, (int)n));
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, UKKO_WIRE_TAG_LEN, tag);
    ok = ok && EVP_CipherFinal_ex(ctx, out + (n ? len : 0), &len);
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, UKKO_WIRE_TAG_LEN, tag);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : UKKO_EINVAL;
}

int cluster__seal(const cluster__keyring_t *kr, const char *name, const uint8_t *body,
                  size_t len, uint8_t *out, size_t outcap, size_t *outlen)
{
    size_t env = sizeof(ukko_wire_envelope_t);
    if (kr->insecure) {
        if (outcap < env + len)
            return UKKO_E2BIG;
        memset(out, 0, env);
        put_envelope(out, 0);
        memcpy(out + env, body, len);
        *outlen = env + len;
        return 0;
    }
    if (kr->nkeys == 0)
        return UKKO_EINVAL;
    if (outcap < env + len + UKKO_WIRE_TAG_LEN || len > INT32_MAX)
        return UKKO_E2BIG;
    put_envelope(out, UKKO_WIRE_F_SEALED);
    /* Random 96-bit nonces, as memberlist does: a repeat is out of reach
     * well beyond 2^32 packets per key, and keys rotate. */
    if (RAND_bytes(out + 4, UKKO_WIRE_NONCE_LEN) != 1)
        return UKKO_EINVAL;
    int rc = gcm(true, kr->keys[0], out, name, body, len, out + env, out + env + len);
    if (rc < 0)
        return rc;
    *outlen = env + len + UKKO_WIRE_TAG_LEN;
    return 0;
}

int cluster__open(const cluster__keyring_t *kr, const char *name, const uint8_t *pkt, size_t len,
                  uint8_t *out, size_t outcap)
{
    size_t env = sizeof(ukko_wire_envelope_t);
    if (len < env || pkt[0] != UKKO_WIRE_MAGIC0 || pkt[1] != UKKO_WIRE_MAGIC1 ||
        pkt[2] != UKKO_WIRE_VERSION)
        return UKKO_EPROTO;
    bool sealed = (pkt[3] & UKKO_WIRE_F_SEALED) != 0;
    if (sealed == kr->insecure || (pkt[3] & ~UKKO_WIRE_F_SEALED))
        return UKKO_EPROTO;
    if (!sealed) {
        size_t n = len - env;
        if (n > outcap)
            return UKKO_E2BIG;
        memcpy(out, pkt + env, n);
        return (int)n;
    }
    if (len < env + UKKO_WIRE_TAG_LEN)
        return UKKO_EPROTO;
    size_t n = len - env - UKKO_WIRE_TAG_LEN;
    if (n > outcap || n > INT32_MAX)
        return UKKO_E2BIG;
    uint8_t tag[UKKO_WIRE_TAG_LEN];
    for (size_t k = 0; k < kr->nkeys; k++) {
        memcpy(tag, pkt + env + n, UKKO_WIRE_TAG_LEN);
        if (gcm(false, kr->keys[k], pkt, name, pkt + env, n, out, tag) == 0)
            return (int)n;
    }
    /* Nothing of a failed attempt may leak to the caller. */
    memset(out, 0, n);
    return UKKO_EINVAL;
}
