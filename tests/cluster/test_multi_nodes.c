/* Multi-process tests of cluster/: real `ukko` nodes on 127.0.1.x (each test
 * its own addresses), faults by kill -9 and SIGSTOP. Every node dies with
 * the test (PR_SET_PDEATHSIG) and .fini kills them and removes the temp dir,
 * even when an assertion fails. Conditions are polled with deadlines; no
 * assertion is about how long anything took. */
#include "cluster_internal.h"
#include "ukko_test.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXN 8


static char *dir;
static pid_t pids[MAXN + 1];
static int base; /* 127.0.1.(base + i) */
static int nnodes;
static char key_a[64], key_b[64];

static void host_of(int i, char *out, size_t n)
{
    snprintf(out, n, "127.0.1.%d", base + i);
}

static void write_keyring(const char *name, char *key, size_t keylen)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert_eq(ut_keyring_write(path, key, keylen), 0, "a keyring at %s", path);
}

/* Starts node i (1-based) with keyring file `ring`. */
static void start(int i, const char *ring)
{
    char host[32], seeds[128], mh[64], ch[64], sn[160], kr[600], log[600];
    host_of(i, host, sizeof(host));
    char s1[32], s2[32];
    host_of(1, s1, sizeof(s1));
    host_of(2, s2, sizeof(s2));
    snprintf(seeds, sizeof(seeds), "%s:7355,%s:7355", s1, s2);
    snprintf(mh, sizeof(mh), "UKKO_MANAGEMENT_HOSTNAME=%s", host);
    snprintf(ch, sizeof(ch), "UKKO_CLUSTER_HOSTNAME=%s", host);
    snprintf(sn, sizeof(sn), "UKKO_CLUSTER_SEED_NODES=%s", seeds);
    snprintf(kr, sizeof(kr), "UKKO_CLUSTER_KEYRING_PATH=%s/%s", dir, ring);
    snprintf(log, sizeof(log), "%s/node%d.log", dir, i);
    const char *env[] = {mh, "UKKO_MANAGEMENT_PORT=8558", ch, sn, kr, "UKKO_LOG_FORMAT=text", NULL};
    const char *argv[] = {UKKO_BIN, "run", NULL};
    pid_t pid = ut_spawn(argv, env, log);
    cr_assert_neq(pid, -1);
    pids[i] = pid;
}

static void setup_range(int first)
{
    base = first;
    dir = ut_tempdir();
    cr_assert(dir);
    write_keyring("ring-a.json", key_a, sizeof(key_a));
    write_keyring("ring-b.json", key_b, sizeof(key_b));
}

static void teardown(void)
{
    for (int i = 0; i <= MAXN; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGCONT);
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    }
    if (dir) {
        ut_rmtree(dir);
        free(dir);
        dir = NULL;
    }
}

/* /cluster/members of node i, parsed (NULL if it does not answer). */
static cJSON *members(int i)
{
    char host[32];
    host_of(i, host, sizeof(host));
    return ut_members(host, 8558, 5000);
}

/* Status of node `about` in node i's view ("" if absent, NULL on no answer). */
static const char *status_in(cJSON *j, int about, char *uid_out)
{
    char want[64], host[32];
    host_of(about, host, sizeof(host));
    snprintf(want, sizeof(want), "ukko://ukko@%s:7355", host);
    return ut_member_status(j, want, uid_out);
}

/* Polls until every running node lists every node in `who` (bitmask) as
 * `status` ("" = absent, "Down|" = Down or absent). */
static bool wait_all(int n, unsigned who, const char *status, int timeout_ms, char *seen,
                     size_t seenlen)
{
    int64_t end = ut_now_ms() + timeout_ms;
    do {
        bool all = true;
        seen[0] = '\0';
        for (int i = 1; i <= n && all; i++) {
            if (pids[i] <= 0)
                continue;
            cJSON *j = members(i);
            if (!j) {
                snprintf(seen, seenlen, "node %d does not answer", i);
                all = false;
                break;
            }
            for (int a = 1; a <= n && all; a++) {
                if (!(who & (1u << a)))
                    continue;
                const char *s = status_in(j, a, NULL);
                bool ok = !strcmp(status, "Down|") ? (!strcmp(s, "Down") || !*s)
                                                   : !strcmp(s, status);
                if (!ok) {
                    snprintf(seen, seenlen, "node %d sees node %d as \"%s\"", i, a, s);
                    all = false;
                }
            }
            cJSON_Delete(j);
        }
        if (all)
            return true;
        usleep(100 * 1000);
    } while (ut_now_ms() < end);
    return false;
}

static unsigned all_of(int n)
{
    unsigned m = 0;
    for (int i = 1; i <= n; i++)
        m |= 1u << i;
    return m;
}

/* The last lines of every node's log, to stderr: for failure messages. */
static void print_logs(int n)
{
    for (int i = 1; i <= n; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/node%d.log", dir, i);
        size_t len = 0;
        char *text = ut_slurp(path, &len);
        fprintf(stderr, "---- log of node %d:\n%s\n", i,
                !text ? "(no log)" : len > 3000 ? text + len - 3000 : text);
        free(text);
    }
}

static void form(int n)
{
    nnodes = n;
    for (int i = 1; i <= n; i++)
        start(i, "ring-a.json");
    char seen[200];
    bool ok = wait_all(n, all_of(n), "Up", 60000, seen, sizeof(seen));
    if (!ok)
        print_logs(n); /* .fini removes the folder */
    cr_assert(ok, "all %d nodes Up in every view; last seen: %s (logs above)", n, seen);
}

static void setup1(void) { setup_range(1); }
static void setup2(void) { setup_range(11); }
static void setup3(void) { setup_range(21); }
static void setup4(void) { setup_range(31); }
static void setup5(void) { setup_range(41); }
static void setup6(void) { setup_range(51); }

Test(multi, five_nodes_form_one_cluster, .init = setup1, .fini = teardown, .timeout = 120)
{
    form(5);
    for (int i = 1; i <= 5; i++) {
        char host[32];
        host_of(i, host, sizeof(host));
        cr_assert(ut_wait_status(host, 8558, "/ready", 200, 60000), "node %d is ready", i);
        cJSON *j = members(i);
        cr_assert(j);
        char want[64];
        snprintf(want, sizeof(want), "ukko://ukko@127.0.1.%d:7355", base + 1);
        cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "leader")), want,
                         "the leader is the lowest address");
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "members")), 5);
        cJSON_Delete(j);
    }
}

Test(multi, kill_9_one_and_it_is_down_on_all_others, .init = setup2, .fini = teardown,
     .timeout = 120)
{
    form(5);
    kill(pids[3], SIGKILL);
    waitpid(pids[3], NULL, 0);
    pids[3] = 0;
    char seen[200];
    bool ok = wait_all(5, 1u << 3, "Down|", 60000, seen, sizeof(seen));
    if (!ok)
        print_logs(5);
    cr_assert(ok, "every other node holds node 3 Down; last seen: %s (logs above)", seen);
    cr_assert(wait_all(5, all_of(5) & ~(1u << 3), "Up", 10000, seen, sizeof(seen)),
              "the others stay Up: %s", seen);
}

Test(multi, sigstop_for_2s_kills_nobody, .init = setup3, .fini = teardown, .timeout = 120)
{
    form(5);
    kill(pids[2], SIGSTOP);
    /* The fault lasts 2 s; meanwhile and for 10 s after, no view may hold
     * anyone Down. */
    int64_t resume = ut_now_ms() + 2000, end = resume + 10000;
    bool resumed = false;
    while (ut_now_ms() < end) {
        if (!resumed && ut_now_ms() >= resume) {
            kill(pids[2], SIGCONT);
            resumed = true;
        }
        for (int i = 1; i <= 5; i++) {
            if (i == 2 && !resumed)
                continue;
            cJSON *j = members(i);
            if (!j)
                continue;
            for (int a = 1; a <= 5; a++) {
                const char *s = status_in(j, a, NULL);
                cr_assert(strcmp(s, "Down") && *s, "node %d must not lose node %d (it says %s)",
                          i, a, *s ? s : "absent");
            }
            cJSON_Delete(j);
        }
        usleep(200 * 1000);
    }
    char seen[200];
    cr_assert(wait_all(5, all_of(5), "Up", 60000, seen, sizeof(seen)), "all Up: %s", seen);
}

Test(multi, a_restart_on_the_same_address_replaces_the_old_incarnation, .init = setup4,
     .fini = teardown, .timeout = 120)
{
    form(4);
    cJSON *j = members(1);
    char old_uid[40] = "";
    status_in(j, 4, old_uid);
    cJSON_Delete(j);
    cr_assert(*old_uid);
    kill(pids[4], SIGKILL);
    waitpid(pids[4], NULL, 0);
    start(4, "ring-a.json");
    char seen[200];
    cr_assert(wait_all(4, 1u << 4, "Up", 60000, seen, sizeof(seen)), "node 4 Up again: %s",
              seen);
    /* every view holds the new uid, and only it */
    int64_t end = ut_now_ms() + 60000;
    bool ok = false;
    while (!ok && ut_now_ms() < end) {
        ok = true;
        for (int i = 1; i <= 4 && ok; i++) {
            cJSON *v = members(i);
            char uid[40] = "";
            ok = v && !strcmp(status_in(v, 4, uid), "Up") && strcmp(uid, old_uid) &&
                 cJSON_GetArraySize(cJSON_GetObjectItem(v, "members")) == 4;
            cJSON_Delete(v);
        }
        if (!ok)
            usleep(100 * 1000);
    }
    cr_assert(ok, "the old incarnation %s is replaced in every view", old_uid);
}

Test(multi, a_node_with_the_wrong_key_is_never_admitted, .init = setup5, .fini = teardown,
     .timeout = 120)
{
    form(3);
    start(4, "ring-b.json");
    char host[32];
    host_of(1, host, sizeof(host));
    /* Until node 1 has refused some of the intruder's packets... */
    int64_t end = ut_now_ms() + 60000;
    bool refused = false;
    while (!refused && ut_now_ms() < end) {
        ukko_buf_t m;
        ukko_buf_init(&m, 1 << 20);
        if (ut_http(host, 8558, "GET", "/metrics", &m, 1000) == 200) {
            const char *p = strstr(m.data, "ukko_cluster_dropped_packets_total{reason=\"auth\"} ");
            refused = p && atof(p + strlen("ukko_cluster_dropped_packets_total{reason=\"auth\"} ")) > 0;
        }
        ukko_buf_destroy(&m);
        if (!refused)
            usleep(100 * 1000);
    }
    cr_assert(refused, "node 1 counts the intruder's packets as failed authentication");
    /* ...and all the while, and after, no view holds it. */
    char seen[200];
    cr_assert(wait_all(3, 1u << 4, "", 10000, seen, sizeof(seen)), "node 4 absent: %s", seen);
    char h4[32];
    host_of(4, h4, sizeof(h4));
    cr_assert_neq(ut_http(h4, 8558, "GET", "/ready", NULL, 1000), 200,
                  "the intruder never becomes ready");
}

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static void send_udp(int fd, const char *host, const uint8_t *p, size_t n)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(7355)};
    inet_pton(AF_INET, host, &sin.sin_addr);
    sendto(fd, p, n, 0, (struct sockaddr *)&sin, sizeof(sin));
}

Test(multi, garbage_truncated_and_replayed_packets_change_nothing, .init = setup6,
     .fini = teardown, .timeout = 120)
{
    form(3);
    cJSON *j = members(1);
    char uid2[40] = "", uid3[40] = "";
    status_in(j, 2, uid2);
    status_in(j, 3, uid3);
    cJSON_Delete(j);
    /* A packet as node 2 sends it: its own alive, sealed with the key. And
     * an old one, from when it was Joining. */
    cluster__keyring_t kr;
    memset(&kr, 0, sizeof(kr));
    char text[80], why[200];
    snprintf(text, sizeof(text), "[\"%s\"]", key_a);
    cr_assert_eq(cluster__keyring_parse(&kr, text, strlen(text), why, sizeof(why)), 0, "%s", why);
    uint8_t uid[16];
    for (int i = 0; i < 16; i++)
        uid[i] = (uint8_t)(hexval(uid2[2 * i]) << 4 | hexval(uid2[2 * i + 1]));
    char h2[32], h1[32];
    host_of(2, h2, sizeof(h2));
    host_of(1, h1, sizeof(h1));
    char a2[48];
    snprintf(a2, sizeof(a2), "%s:7355", h2);
    cluster__addr_t from;
    cr_assert_eq(cluster__addr_parse(a2, 7355, &from), 0);
    uint8_t body[256], pkt_now[512], pkt_old[512];
    size_t n_now, n_old;
    for (int k = 0; k < 2; k++) {
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, body, sizeof(body));
        ukko_wire_hdr_t h = {.kind = UKKO_WIRE_GOSSIP, .flags = UKKO_WIRE_H_MEMBER, .from = from};
        memcpy(h.uid, uid, 16);
        ukko_wire_put_header(&w, &h);
        ukko_wire_put_node(&w, UKKO_MSG_ALIVE, &from, uid, 0,
                           k ? UKKO_MEMBER_JOINING : UKKO_MEMBER_UP, 0, NULL, 0);
        cr_assert_eq(cluster__seal(&kr, "ukko", body, w.len, k ? pkt_old : pkt_now, 512,
                                   k ? &n_old : &n_now),
                     0);
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    uint8_t junk[1400];
    unsigned seed = 7;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)rand_r(&seed);
        send_udp(fd, h1, junk, (size_t)(rand_r(&seed) % sizeof(junk)));
        junk[0] = 'u', junk[1] = 'k', junk[2] = 1, junk[3] = 1; /* a plausible envelope */
        send_udp(fd, h1, junk, 16 + (size_t)(rand_r(&seed) % 200));
        send_udp(fd, h1, pkt_now, (size_t)(rand_r(&seed) % n_now)); /* truncated */
        send_udp(fd, h1, pkt_now, n_now);                          /* replayed */
        send_udp(fd, h1, pkt_old, n_old);                          /* old, replayed */
        uint8_t flipped[512];
        memcpy(flipped, pkt_now, n_now);
        flipped[rand_r(&seed) % n_now] ^= 0x10;
        send_udp(fd, h1, flipped, n_now);
    }
    close(fd);
    /* Nothing changed: same members, same uids, all Up, and node 1 still
     * talks to the others. */
    usleep(500 * 1000); /* let the packets be read; the checks below poll anyway */
    char seen[200];
    cr_assert(wait_all(3, all_of(3), "Up", 60000, seen, sizeof(seen)), "all Up: %s", seen);
    for (int i = 1; i <= 3; i++) {
        cJSON *v = members(i);
        char u2[40] = "", u3[40] = "";
        status_in(v, 2, u2);
        status_in(v, 3, u3);
        cr_assert_str_eq(u2, uid2, "node %d still holds node 2's uid", i);
        cr_assert_str_eq(u3, uid3);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(v, "members")), 3);
        cJSON_Delete(v);
    }
    ukko_buf_t m;
    ukko_buf_init(&m, 1 << 20);
    cr_assert_eq(ut_http(h1, 8558, "GET", "/metrics", &m, 10000), 200);
    cr_assert(strstr(m.data, "ukko_cluster_dropped_packets_total{reason=\"auth\"} 0\n") == NULL,
              "the forged and truncated packets were counted as failed authentication");
    ukko_buf_destroy(&m);
}
