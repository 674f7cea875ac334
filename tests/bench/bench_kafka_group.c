/* bench_kafka_group.c: the consumer-group figures of the Kafka baseline. The parent
 * runs a steady producer thread and reads what its member processes (this program
 * run with --member, one consumer each) report through a pipe per member: every
 * record processed and every assignment. Only the parent's main thread touches the
 * group state; the producer thread owns its producer until it is joined.
 * Invariant: no member outlives the parent (SIGTERM, then SIGKILL; PDEATHSIG). */
#include "bench_kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QUIET_US 1000000       /* an assignment unchanged this long is settled */
#define SETTLE_US 120000000    /* give up on a group that has not settled by then */
#define SEEN_SECONDS 3600      /* the sequence bitmaps cover this long a run */
#define HEARTBEAT_MS 3000      /* librdkafka's heartbeat.interval.ms, left as it is */

/* ---- group members (child processes) ------------------------------------------- */

/* What a member tells the parent, one fixed-size write (atomic: < PIPE_BUF). */
typedef struct wire {
    uint8_t type;               /* 'R' record processed, 'A' assignment, 'C' closed */
    uint8_t pad[3];
    int32_t partition;
    int64_t offset;
    uint64_t seq;
    int64_t t_us;               /* when (CLOCK_MONOTONIC) */
    int64_t produced_us;
    uint64_t parts[KB_MAX_PARTS / 64];
} wire_t;

static void member_send(const wire_t *w)
{
    const char *p = (const char *)w;
    size_t left = sizeof(*w);
    while (left) {
        ssize_t n = write(STDOUT_FILENO, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(1);  /* the parent is gone: so is the point of going on */
        p += n;
        left -= (size_t)n;
    }
}

static void member_report_assignment(rd_kafka_t *rk)
{
    wire_t w = {.type = 'A', .partition = -1};
    rd_kafka_topic_partition_list_t *cur = NULL;
    if (!rd_kafka_assignment(rk, &cur)) {
        for (int i = 0; i < cur->cnt; i++)
            if (cur->elems[i].partition >= 0 && cur->elems[i].partition < KB_MAX_PARTS)
                w.parts[cur->elems[i].partition / 64] |= 1ull << (cur->elems[i].partition % 64);
        rd_kafka_topic_partition_list_destroy(cur);
    }
    w.t_us = kb_now_us();
    member_send(&w);
}

/* The rebalance callback every application writes: eager (range) replaces the
 * whole assignment, cooperative adds and removes only what moves. */
static void member_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            e = rd_kafka_assign(rk, parts);
    } else {
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            e = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        fprintf(stderr, "%s member: rebalance: %s\n", kb_prog,
                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (e) {
        fprintf(stderr, "%s member: rebalance: %s\n", kb_prog, rd_kafka_err2str(e));
    }
    member_report_assignment(rk);
}

/* A consumer-group member the usual at-least-once way: offsets stored after each
 * record is processed (told to the parent), committed every second by librdkafka
 * and on revocation. SIGTERM: leave gracefully with rd_kafka_consumer_close. */
int kb_member_main(const kb_opts_t *o)
{
    char err[256], why[512], client[32];
    snprintf(client, sizeof(client), "member-%d", o->id + 1);
    const char *const kv[] = {
        "group.id", o->group,
        "client.id", client,
        "partition.assignment.strategy", o->strategy,
        "enable.auto.commit", "true",
        "auto.commit.interval.ms", "1000",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest",
        NULL};
    struct sigaction sa = {.sa_handler = kb_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    rd_kafka_conf_t *conf = kb_conf_new(o->bootstrap, kv, why, sizeof(why));
    if (!conf) {
        fprintf(stderr, "%s member %d: %s\n", kb_prog, o->id + 1, why);
        return 1;
    }
    rd_kafka_conf_set_rebalance_cb(conf, member_rebalance);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "%s member %d: rd_kafka_new: %s\n", kb_prog, o->id + 1, err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        fprintf(stderr, "%s member %d: subscribe %s: %s\n", kb_prog, o->id + 1,
                o->topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return 1;
    }
    kb_stores_t *stores = calloc(1, sizeof(*stores));
    while (!kb_stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err) {
            fprintf(stderr, "%s member %d: %s\n", kb_prog, o->id + 1,
                    rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        wire_t w = {.type = 'R', .partition = m->partition, .offset = m->offset};
        kb_value_read(m, &w.seq, &w.produced_us);
        w.t_us = kb_now_us();
        member_send(&w);  /* processed */
        kb_stores_put(stores, rk, m);  /* fails only for a partition just revoked */
        rd_kafka_message_destroy(m);
    }
    kb_stores_free(stores);
    free(stores);
    e = rd_kafka_consumer_close(rk);  /* revokes (the callback reports it), commits, leaves */
    if (e)
        fprintf(stderr, "%s member %d: close: %s\n", kb_prog, o->id + 1,
                rd_kafka_err2str(e));
    wire_t w = {.type = 'C', .partition = -1, .t_us = kb_now_us()};
    member_send(&w);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- the group figures (parent side) -------------------------------------------- */

typedef struct member {
    pid_t pid;
    int fd;                         /* read end of its stdout; -1 once it ended */
    bool active;                    /* counted in the assignment the group should reach */
    bool reported;                  /* sent an assignment since it started */
    uint64_t parts[KB_MAX_PARTS / 64];
    size_t have;
    char buf[sizeof(wire_t) * 64];
} member_t;

typedef struct steady {
    kb_prod_t p;
    int rate;
    pthread_t thread;
    atomic_bool stop;               /* stored by the parent, loaded by the thread */
    atomic_uint_fast64_t sent;      /* stored by the thread, loaded by the parent */
    bool capped;
    bool running;                   /* the thread was started and not yet joined */
} steady_t;

typedef struct group {
    const kb_opts_t *o;
    const char *bootstrap, *strategy;
    char topic[64], name[96];
    member_t m[KB_MAX_MEMBERS];
    int nm;
    int64_t last_us[KB_MAX_PARTS];  /* newest processing time, per partition */
    int64_t newest_produced_us[KB_MAX_PARTS];
    int64_t last_any_us;
    int64_t last_change_us;         /* newest assignment report of an active member */
    uint8_t *seen;                  /* one bit per sequence processed */
    uint64_t cap, processed, dups;
    kb_window_t *win;               /* the stretch being measured, or NULL */
    steady_t prod;
} group_t;

static void *steady_run(void *arg)
{
    steady_t *s = arg;
    char *buf = malloc((size_t)s->p.size);
    int64_t t0 = kb_now_us();
    uint64_t sent = 0;
    /* Paced by the clock, not by sleeps of fixed length: records due = rate x elapsed. */
    while (!atomic_load(&s->stop) && !kb_stop) {  /* pairs with the store in group_stop_producer */
        uint64_t due = (uint64_t)((double)(kb_now_us() - t0) * s->rate / 1e6);
        while (sent < due && sent < s->p.cap && !atomic_load(&s->stop)) {
            if (kb_prod_send(&s->p, sent, buf) < 0)
                break;
            atomic_store(&s->sent, ++sent);  /* pairs with the load in group_stop_producer */
        }
        if (sent >= s->p.cap)
            s->capped = true;
        rd_kafka_poll(s->p.rk, 0);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kb_prod_flush(&s->p, 30000000);
    free(buf);
    return NULL;
}

static int group_start_producer(group_t *g, char *why, size_t why_size)
{
    steady_t *s = &g->prod;
    if (kb_prod_init(&s->p, g->bootstrap, g->topic, g->o->size, why, why_size) < 0)
        return -1;
    s->rate = g->o->rate;
    s->p.cap = g->cap;
    s->p.acked_bits = calloc((size_t)(g->cap / 8 + 1), 1);
    atomic_init(&s->stop, false);
    atomic_init(&s->sent, 0);
    if (pthread_create(&s->thread, NULL, steady_run, s)) {
        snprintf(why, why_size, "pthread_create failed");
        kb_prod_destroy(&s->p);
        return -1;
    }
    s->running = true;
    return 0;
}

static void group_stop_producer(group_t *g)
{
    if (!g->prod.running)
        return;
    atomic_store(&g->prod.stop, true);  /* pairs with the load in steady_run */
    pthread_join(g->prod.thread, NULL);
    g->prod.running = false;
}

static int bits_count(const uint64_t *bits)
{
    int n = 0;
    for (int i = 0; i < KB_MAX_PARTS / 64; i++)
        n += __builtin_popcountll(bits[i]);
    return n;
}

static void group_on_record(group_t *g, const wire_t *w)
{
    int p = w->partition;
    kb_window_t *win = g->win;
    if (p < 0 || p >= KB_MAX_PARTS)
        return;
    g->processed++;
    bool in = win && w->t_us >= win->start_us;
    if (w->seq < g->cap) {
        uint8_t bit = (uint8_t)(1u << (w->seq % 8));
        if (g->seen[w->seq / 8] & bit) {
            g->dups++;
            if (in)
                win->dups++;
        }
        g->seen[w->seq / 8] |= bit;
    }
    /* A gap ends with the first record processed after it: one that straddles the
     * window's start counts whole (the partition stood still that long). Reports from
     * different members may arrive slightly out of order: only forward steps count. */
    if (in) {
        win->records++;
        if (g->last_us[p] && w->t_us - g->last_us[p] > win->gap_part_us) {
            win->gap_part_us = w->t_us - g->last_us[p];
            win->gap_part = p;
        }
        if (g->last_any_us && w->t_us - g->last_any_us > win->gap_group_us)
            win->gap_group_us = w->t_us - g->last_any_us;
        if (w->t_us - w->produced_us > win->latency_us)
            win->latency_us = w->t_us - w->produced_us;
    }
    if (w->t_us > g->last_us[p])
        g->last_us[p] = w->t_us;
    if (w->t_us > g->last_any_us)
        g->last_any_us = w->t_us;
    if (w->produced_us > g->newest_produced_us[p])
        g->newest_produced_us[p] = w->produced_us;
}

static void member_ended(member_t *m)
{
    close(m->fd);
    m->fd = -1;
    m->active = false;
    memset(m->parts, 0, sizeof(m->parts));
    while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Reads what the members sent, for up to timeout_ms. */
static void group_pump(group_t *g, int timeout_ms)
{
    struct pollfd pf[KB_MAX_MEMBERS];
    int idx[KB_MAX_MEMBERS], n = 0;
    for (int i = 0; i < g->nm; i++)
        if (g->m[i].fd >= 0) {
            pf[n] = (struct pollfd){.fd = g->m[i].fd, .events = POLLIN};
            idx[n++] = i;
        }
    if (!n) {
        usleep((useconds_t)timeout_ms * 1000);
        return;
    }
    if (poll(pf, (nfds_t)n, timeout_ms) <= 0)
        return;
    for (int k = 0; k < n; k++) {
        if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        member_t *m = &g->m[idx[k]];
        ssize_t got = read(m->fd, m->buf + m->have, sizeof(m->buf) - m->have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            member_ended(m);
            continue;
        }
        m->have += (size_t)got;
        size_t off = 0;
        for (; m->have - off >= sizeof(wire_t); off += sizeof(wire_t)) {
            wire_t w;
            memcpy(&w, m->buf + off, sizeof(w));
            if (w.type == 'R') {
                group_on_record(g, &w);
            } else if (w.type == 'A') {
                memcpy(m->parts, w.parts, sizeof(m->parts));
                m->reported = true;
                if (m->active && w.t_us > g->last_change_us)
                    g->last_change_us = w.t_us;
            } else if (w.type == 'C' && g->win) {
                kb_say("group %s: member %d closed %.0f ms after it was asked to", g->strategy,
                       idx[k] + 1, (double)(w.t_us - g->win->start_us) / 1000);
            }
        }
        memmove(m->buf, m->buf + off, m->have - off);
        m->have -= off;
    }
}

/* Settled: every active member has been assigned, their assignments are disjoint,
 * cover every partition and are balanced (each holds P/n rounded down or up). */
static bool group_balanced(const group_t *g)
{
    uint64_t all[KB_MAX_PARTS / 64] = {0};
    int n = 0, P = g->o->partitions;
    for (int i = 0; i < g->nm; i++)
        if (g->m[i].active)
            n++;
    if (!n)
        return false;
    for (int i = 0; i < g->nm; i++) {
        const member_t *m = &g->m[i];
        if (!m->active)
            continue;
        int c = bits_count(m->parts);
        if (!m->reported || c < P / n || c > (P + n - 1) / n)
            return false;
        for (int w = 0; w < KB_MAX_PARTS / 64; w++) {
            if (all[w] & m->parts[w])
                return false;
            all[w] |= m->parts[w];
        }
    }
    return bits_count(all) == P;
}

/* Polls until the group has settled: balanced, every partition has processed a
 * record produced after the change that balanced it (caught up), and no change for
 * QUIET_US. Closes win (if any) there. 0, or -1 on Ctrl-C or after SETTLE_US. */
static int group_settle(group_t *g, kb_window_t *win, int64_t from_us)
{
    for (int64_t deadline = from_us + SETTLE_US; !kb_stop;) {
        group_pump(g, 50);
        int64_t now = kb_now_us();
        if (group_balanced(g) && now - g->last_change_us >= QUIET_US) {
            int p = 0;
            while (p < g->o->partitions && g->newest_produced_us[p] >= g->last_change_us)
                p++;
            if (p == g->o->partitions) {
                if (win) {
                    win->settle_us = g->last_change_us > from_us ? g->last_change_us - from_us : 0;
                    win->end_us = now;
                    win->done = true;
                }
                return 0;
            }
        }
        if (now > deadline) {
            kb_say("group %s: no settled assignment %d s after the step; members hold:",
                   g->strategy, SETTLE_US / 1000000);
            for (int i = 0; i < g->nm; i++)
                if (g->m[i].active)
                    kb_say("  member %d: %d partitions%s", i + 1, bits_count(g->m[i].parts),
                           g->m[i].reported ? "" : " (no assignment yet)");
            return -1;
        }
    }
    return -1;
}

static int member_spawn(group_t *g, char *why, size_t why_size)
{
    int fds[2];
    char id[16];
    member_t *m = &g->m[g->nm];
    snprintf(id, sizeof(id), "%d", g->nm);
    const char *argv[] = {kb_self, "--member", id, "--bootstrap", g->bootstrap,
                          "--topic", g->topic, "--group", g->name, "--strategy", g->strategy,
                          NULL};
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(why, why_size, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the parent has threads. Its own
         * process group keeps a Ctrl-C meant for the parent away; it dies with it. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        execv(kb_self, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        snprintf(why, why_size, "fork: %s", strerror(errno));
        return -1;
    }
    memset(m, 0, sizeof(*m));
    m->pid = pid;
    m->fd = fds[0];
    m->active = true;
    g->nm++;
    return 0;
}

/* Asks every member still running to leave (SIGTERM), then kills what is left
 * after the deadline. Nothing of the group outlives this. */
static void group_stop_members(group_t *g, int64_t timeout_us)
{
    for (int i = 0; i < g->nm; i++)
        if (g->m[i].fd >= 0) {
            g->m[i].active = false;
            kill(g->m[i].pid, SIGTERM);
        }
    for (int64_t deadline = kb_now_us() + timeout_us;;) {
        int left = 0;
        for (int i = 0; i < g->nm; i++)
            left += g->m[i].fd >= 0;
        if (!left)
            break;
        if (kb_now_us() > deadline) {
            for (int i = 0; i < g->nm; i++)
                if (g->m[i].fd >= 0) {
                    kill(g->m[i].pid, SIGKILL);
                    member_ended(&g->m[i]);
                }
            break;
        }
        group_pump(g, 50);
    }
}

static void window_open(group_t *g, kb_window_t *win)
{
    memset(win, 0, sizeof(*win));
    win->start_us = kb_now_us();
    win->gap_part = -1;
    g->win = win;
}

/* Keeps measuring for a random part of one heartbeat interval, so that a step does
 * not always fall at the same point of the members' heartbeats (which is when they
 * hear of a rebalance): a settle ends on a heartbeat, and a fixed wait after it would
 * give every cycle the same phase. */
static void group_random_phase(group_t *g, unsigned *seed)
{
    int64_t until = kb_now_us() + (int64_t)(rand_r(seed) % HEARTBEAT_MS) * 1000;
    while (!kb_stop && kb_now_us() < until)
        group_pump(g, 20);
}

/* Waits until member i's process has ended (it was asked to leave), killing it after
 * 30 s, so that its slot can take the next member. */
static void group_reap(group_t *g, int i)
{
    for (int64_t deadline = kb_now_us() + 30000000; g->m[i].fd >= 0;) {
        if (kb_now_us() > deadline || kb_stop) {
            kb_say("group %s: member %d still runs after it was asked to leave: killed",
                   g->strategy, i + 1);
            kill(g->m[i].pid, SIGKILL);
            member_ended(&g->m[i]);
            break;
        }
        group_pump(g, 50);
    }
}

/* One consumer-group run: 3 members settle, a steady window, then cycles of a 4th
 * joining and leaving again (a StatefulSet scaled 3 -> 4 -> 3 loses its newest pod),
 * then the producer stops and every acknowledged record must have been processed. */
int kb_group_run(const char *bootstrap, const kb_opts_t *o, const char *strategy,
                 kb_gresult_t *r)
{
    char why[512];
    int rc = -1;
    unsigned seed = (unsigned)kb_now_us() ^ (unsigned)getpid();
    group_t g = {.o = o, .bootstrap = bootstrap, .strategy = strategy};
    memset(r, 0, sizeof(*r));
    r->strategy = strategy;
    snprintf(g.topic, sizeof(g.topic), "bench-group-%s-%d", strategy, (int)getpid());
    snprintf(g.name, sizeof(g.name), "bench-group-%s-%d", strategy, (int)getpid());
    g.cap = (uint64_t)o->rate * SEEN_SECONDS;
    g.seen = calloc((size_t)(g.cap / 8 + 1), 1);
    if (kb_topic_create(bootstrap, g.topic, o->partitions, why, sizeof(why)) < 0 ||
        group_start_producer(&g, why, sizeof(why)) < 0) {
        kb_say("group %s: %s", strategy, why);
        goto out;
    }
    int64_t t_start = kb_now_us();
    for (int i = 0; i < 3; i++)
        if (member_spawn(&g, why, sizeof(why)) < 0) {
            kb_say("group %s: member %d: %s", strategy, i + 1, why);
            goto out;
        }
    if (group_settle(&g, NULL, t_start) < 0)
        goto out;
    kb_say("group %s: 3 members settled %.1f s after they started", strategy,
           (double)(kb_now_us() - t_start) / 1e6);

    window_open(&g, &r->steady);
    while (!kb_stop && kb_now_us() < r->steady.start_us + o->steady_us)
        group_pump(&g, 50);
    r->steady.end_us = kb_now_us();
    r->steady.done = !kb_stop;
    g.win = NULL;

    for (int c = 0; c < o->runs && !kb_stop; c++) {
        group_random_phase(&g, &seed);
        window_open(&g, &r->join[c]);
        if (member_spawn(&g, why, sizeof(why)) < 0) {
            kb_say("group %s: member 4: %s", strategy, why);
            goto out;
        }
        if (group_settle(&g, &r->join[c], r->join[c].start_us) < 0)
            goto out;
        g.win = NULL;

        group_random_phase(&g, &seed);
        window_open(&g, &r->leave[c]);
        g.m[3].active = false;
        kill(g.m[3].pid, SIGTERM);
        if (group_settle(&g, &r->leave[c], r->leave[c].start_us) < 0)
            goto out;
        g.win = NULL;
        group_reap(&g, 3);
        g.nm = 3;
        r->cycles = c + 1;
        kb_say("group %s: cycle %d: the 4th member's join settled in %.2f s, its leave in %.2f s",
               strategy, c + 1, (double)r->join[c].settle_us / 1e6,
               (double)r->leave[c].settle_us / 1e6);
    }
    if (kb_stop)
        goto out;

    /* Every record the broker acknowledged must be processed (at-least-once). */
    group_stop_producer(&g);
    r->produced = (int64_t)g.prod.p.acked;
    for (int64_t deadline = kb_now_us() + 30000000; !kb_stop && kb_now_us() < deadline;) {
        uint64_t missing = 0;
        for (uint64_t s = 0; s < g.cap / 8 + 1 && !missing; s++)
            missing = g.prod.p.acked_bits[s] & (uint8_t)~g.seen[s];
        if (!missing)
            break;
        group_pump(&g, 100);
    }
    r->lost = 0;
    for (uint64_t s = 0; s < g.cap / 8 + 1; s++)
        r->lost += __builtin_popcount(g.prod.p.acked_bits[s] & (uint8_t)~g.seen[s]);
    if (r->lost)
        kb_say("group %s: %" PRId64 " acknowledged records were never processed", strategy,
               r->lost);
    if (g.prod.p.failed)
        kb_say("group %s: %" PRIu64 " records not acknowledged (first: %s)", strategy,
               g.prod.p.failed, g.prod.p.first_error);
    if (g.prod.capped)
        kb_say("group %s: the run outlasted %d s of records: later ones were not produced",
               strategy, SEEN_SECONDS);
    rc = kb_stop ? -1 : 0;
    r->done = rc == 0;
out:
    g.win = NULL;
    group_stop_members(&g, kb_stop ? 5000000 : 30000000);
    group_stop_producer(&g);
    r->processed = (int64_t)g.processed;
    r->dups = (int64_t)g.dups;
    kb_prod_destroy(&g.prod.p);
    free(g.seen);
    return rc;
}
