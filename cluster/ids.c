/* ids.c: the process's table of endpoints and identities (address + uid),
 * interned so that members refer to them by small dense ids. One thread; the
 * simulator shares one table between thousands of nodes, which is why the
 * per-node member entries stay small. Ids are never reused. */
#include "cluster_internal.h"

#include <stdlib.h>
#include <string.h>

struct cluster__ids {
    cluster__addr_t *addrs;
    size_t naddrs, addrs_cap;
    uint32_t *addr_tab; /* open addressing: address id + 1, 0 empty */
    size_t addr_tab_cap;
    cluster__ident_t *idents;
    size_t nidents, idents_cap;
    uint32_t *ident_tab;
    size_t ident_tab_cap;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return mix(h);
}

static uint64_t addr_hash(const cluster__addr_t *a)
{
    return hash_bytes(a->ip, 16, a->port);
}

cluster__ids_t *cluster__ids_new(void)
{
    return calloc(1, sizeof(cluster__ids_t));
}

void cluster__ids_free(cluster__ids_t *ids)
{
    if (!ids)
        return;
    for (size_t i = 0; i < ids->nidents; i++)
        free(ids->idents[i].roles);
    free(ids->idents);
    free(ids->ident_tab);
    free(ids->addrs);
    free(ids->addr_tab);
    free(ids);
}

/* Grows an open-addressing table to twice its size when half full. */
static int grow_tab(uint32_t **tab, size_t *cap, size_t count, uint64_t (*h)(const void *, uint32_t),
                    const void *ctx)
{
    if (*cap && count * 2 < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    uint32_t *nt = calloc(ncap, sizeof(uint32_t));
    if (!nt)
        return UKKO_ENOMEM;
    for (size_t i = 0; i < *cap; i++) {
        uint32_t v = (*tab)[i];
        if (!v)
            continue;
        size_t j = (size_t)h(ctx, v - 1) & (ncap - 1);
        while (nt[j])
            j = (j + 1) & (ncap - 1);
        nt[j] = v;
    }
    free(*tab);
    *tab = nt;
    *cap = ncap;
    return 0;
}

static uint64_t addr_hash_of(const void *ctx, uint32_t id)
{
    const cluster__ids_t *ids = ctx;
    return addr_hash(&ids->addrs[id]);
}

static uint64_t ident_key(uint32_t addr, const uint8_t *uid)
{
    return hash_bytes(uid, CLUSTER__UID_LEN, addr);
}

static uint64_t ident_hash_of(const void *ctx, uint32_t id)
{
    const cluster__ids_t *ids = ctx;
    return ident_key(ids->idents[id].addr, ids->idents[id].uid);
}

uint32_t cluster__ids_addr(cluster__ids_t *ids, const cluster__addr_t *a)
{
    if (ids->addr_tab_cap) {
        size_t j = (size_t)addr_hash(a) & (ids->addr_tab_cap - 1);
        while (ids->addr_tab[j]) {
            uint32_t id = ids->addr_tab[j] - 1;
            if (cluster__addr_eq(&ids->addrs[id], a))
                return id;
            j = (j + 1) & (ids->addr_tab_cap - 1);
        }
    }
    if (grow_tab(&ids->addr_tab, &ids->addr_tab_cap, ids->naddrs + 1, addr_hash_of, ids) < 0)
        return UINT32_MAX;
    if (ids->naddrs == ids->addrs_cap) {
        size_t ncap = ids->addrs_cap ? ids->addrs_cap * 2 : 64;
        cluster__addr_t *na = realloc(ids->addrs, ncap * sizeof(*na));
        if (!na)
            return UINT32_MAX;
        ids->addrs = na;
        ids->addrs_cap = ncap;
    }
    uint32_t id = (uint32_t)ids->naddrs++;
    ids->addrs[id] = *a;
    size_t j = (size_t)addr_hash(a) & (ids->addr_tab_cap - 1);
    while (ids->addr_tab[j])
        j = (j + 1) & (ids->addr_tab_cap - 1);
    ids->addr_tab[j] = id + 1;
    return id;
}

const cluster__addr_t *cluster__ids_addr_at(const cluster__ids_t *ids, uint32_t addr_id)
{
    return addr_id < ids->naddrs ? &ids->addrs[addr_id] : NULL;
}

size_t cluster__ids_addr_count(const cluster__ids_t *ids)
{
    return ids->naddrs;
}

uint32_t cluster__ids_ident(cluster__ids_t *ids, uint32_t addr_id, const uint8_t *uid,
                            int64_t started_ms, const char *roles, size_t roles_len)
{
    uint64_t key = ident_key(addr_id, uid);
    if (ids->ident_tab_cap) {
        size_t j = (size_t)key & (ids->ident_tab_cap - 1);
        while (ids->ident_tab[j]) {
            uint32_t id = ids->ident_tab[j] - 1;
            if (ids->idents[id].addr == addr_id &&
                !memcmp(ids->idents[id].uid, uid, CLUSTER__UID_LEN))
                return id;
            j = (j + 1) & (ids->ident_tab_cap - 1);
        }
    }
    if (grow_tab(&ids->ident_tab, &ids->ident_tab_cap, ids->nidents + 1, ident_hash_of, ids) < 0)
        return UINT32_MAX;
    if (ids->nidents == ids->idents_cap) {
        size_t ncap = ids->idents_cap ? ids->idents_cap * 2 : 64;
        cluster__ident_t *ni = realloc(ids->idents, ncap * sizeof(*ni));
        if (!ni)
            return UINT32_MAX;
        ids->idents = ni;
        ids->idents_cap = ncap;
    }
    cluster__ident_t *e = &ids->idents[ids->nidents];
    memset(e, 0, sizeof(*e));
    e->addr = addr_id;
    memcpy(e->uid, uid, CLUSTER__UID_LEN);
    e->started_ms = started_ms;
    const cluster__addr_t *a = &ids->addrs[addr_id];
    e->hash = hash_bytes(uid, CLUSTER__UID_LEN, addr_hash(a));
    if (roles && roles_len) {
        e->roles = malloc(roles_len + 1);
        if (!e->roles)
            return UINT32_MAX;
        memcpy(e->roles, roles, roles_len);
        e->roles[roles_len] = '\0';
    }
    uint32_t id = (uint32_t)ids->nidents++;
    size_t j = (size_t)key & (ids->ident_tab_cap - 1);
    while (ids->ident_tab[j])
        j = (j + 1) & (ids->ident_tab_cap - 1);
    ids->ident_tab[j] = id + 1;
    return id;
}

const cluster__ident_t *cluster__ids_at(const cluster__ids_t *ids, uint32_t ident)
{
    return ident < ids->nidents ? &ids->idents[ident] : NULL;
}
