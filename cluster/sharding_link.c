/* sharding_link.c: this node's long-lived TCP connection to each member it
 * sends sharding frames to (tables, hand-offs, reports, tells): frames are
 * numbered (SEQ), sealed with the cluster keyring like state sync and
 * written in the order they were sent, so a fence follows the tells before
 * it. The peer's listener is the membership's (transport_ev.c), which keeps
 * the connection once its first frame is a sharding kind and writes ACKs
 * back on it. Loop thread only. Invariants: a frame stays queued until an
 * ACK covers it, and a new connection starts with the oldest one not
 * covered (the receiver drops what it already had), so nothing is lost
 * while both ends live; a queue is capped, and a link to a member that is
 * gone is dropped with what it held (counted). */
#include "sharding_runtime.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { L_IDLE, L_CONNECTING, L_UP };

struct sh_link {
    sh_t *s;
    cluster__addr_t addr;
    int fd;
    int state;
    ev_io io;
    ev_timer retry;
    ukko_buf_t out;    /* whole frames not yet acknowledged: u32 length + sealed body */
    size_t off;        /* bytes of out written on this connection */
    uint64_t next_seq; /* of the next frame queued */
    uint64_t base_seq; /* of the first frame in out */
    ukko_buf_t in;     /* what the peer wrote back: ACK frames */
    bool full_logged;
    int64_t last_used;
    int64_t backoff_ms;
    sh_link_t *next;
};

static void link_close(sh_link_t *l)
{
    if (l->fd >= 0) {
        ev_io_stop(l->s->loop, &l->io);
        close(l->fd);
        l->fd = -1;
    }
    l->state = L_IDLE;
    /* Whatever no ACK covered goes again, whole, on the next connection. */
    l->off = 0;
    ukko_buf_reset(&l->in);
}

static size_t frame_len_at(const ukko_buf_t *b, size_t pos)
{
    const uint8_t *p = (const uint8_t *)b->data + pos;
    return 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
}

/* The peer has every frame up to seq: they leave the queue. */
static void link_acked(sh_link_t *l, uint64_t seq)
{
    size_t pos = 0;
    while (l->base_seq <= seq && pos + 4 <= l->out.len) {
        size_t flen = frame_len_at(&l->out, pos);
        if (pos + flen > l->out.len)
            break;
        pos += flen;
        l->base_seq++;
    }
    ukko_buf_consume(&l->out, pos);
    l->s->link_bytes -= pos;
    l->off = l->off > pos ? l->off - pos : 0;
    l->backoff_ms = 0;
    l->full_logged = false;
}

/* ACK frames the peer wrote back on this connection. */
static bool read_acks(sh_link_t *l)
{
    ukko_cluster_t *c = l->s->c;
    for (;;) {
        char buf[4096];
        ssize_t n = recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (ukko_buf_append(&l->in, buf, (size_t)n) < 0)
            return false;
        while (l->in.len >= 4) {
            size_t flen = frame_len_at(&l->in, 0);
            if (flen - 4 > 4096 || flen - 4 < sizeof(ukko_wire_envelope_t))
                return false; /* no ACK is that size: a broken stream */
            if (l->in.len < flen)
                break;
            uint8_t body[4096];
            int bl = cluster__open(&c->keyring, c->cc->name, (const uint8_t *)l->in.data + 4,
                                   flen - 4, body, sizeof(body));
            ukko_buf_consume(&l->in, flen);
            sh_frame_t f;
            if (bl > 0 && sh_decode(body, (size_t)bl, &f) == 0 && f.kind == UKKO_WIRE_SH_ACK)
                link_acked(l, f.version);
        }
    }
}

static void link_connect(sh_link_t *l);

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sh_link_t *l = w->data;
    if (l->state == L_IDLE && l->out.len)
        link_connect(l);
}

static void link_failed(sh_link_t *l)
{
    link_close(l);
    if (!l->out.len)
        return;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : 50;
    if (l->backoff_ms > 2000)
        l->backoff_ms = 2000;
    ev_timer_stop(l->s->loop, &l->retry);
    ev_timer_set(&l->retry, (double)l->backoff_ms / 1000.0, 0.);
    ev_timer_start(l->s->loop, &l->retry);
}

static void link_write(sh_link_t *l)
{
    while (l->off < l->out.len) {
        ssize_t n = send(l->fd, l->out.data + l->off, l->out.len - l->off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            link_failed(l);
            return;
        }
        l->off += (size_t)n;
    }
    /* All written; it stays queued until acknowledged. */
    ev_io_stop(l->s->loop, &l->io);
    ev_io_set(&l->io, l->fd, EV_READ);
    ev_io_start(l->s->loop, &l->io);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sh_link_t *l = w->data;
    if (l->state == L_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            link_failed(l);
            return;
        }
        l->state = L_UP;
    }
    if ((revents & EV_READ) && !read_acks(l)) {
        link_failed(l);
        return;
    }
    if (l->off < l->out.len)
        link_write(l);
}

static void link_connect(sh_link_t *l)
{
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)cluster__addr_to_sockaddr(&l->addr, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        link_failed(l);
        return;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        close(fd);
        link_failed(l);
        return;
    }
    l->fd = fd;
    l->state = L_CONNECTING;
    l->off = 0;
    ev_io_init(&l->io, on_io, fd, EV_WRITE | EV_READ);
    l->io.data = l;
    ev_io_start(l->s->loop, &l->io);
}

static sh_link_t *link_get(sh_t *s, const cluster__addr_t *to)
{
    for (sh_link_t *l = s->links; l; l = l->next)
        if (cluster__addr_eq(&l->addr, to))
            return l;
    sh_link_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->s = s;
    l->addr = *to;
    l->fd = -1;
    /* Room for a burst of tells to a member that is slow or reconnecting;
     * past it a tell is refused (UKKO_E2BIG), never grown without end. */
    ukko_buf_init(&l->out, (size_t)s->c->cc->max_sync_bytes * 8);
    ukko_buf_init(&l->in, 1 << 16);
    l->next_seq = l->base_seq = 1;
    ev_init(&l->retry, on_retry);
    l->retry.data = l;
    l->next = s->links;
    s->links = l;
    return l;
}

int sh__link_send(sh_t *s, const cluster__addr_t *to, const uint8_t *body, size_t n)
{
    sh_link_t *l = link_get(s, to);
    if (!l)
        return UKKO_ENOMEM;
    ukko_cluster_t *c = s->c;
    /* SEQ(next_seq, body) */
    size_t wn = sizeof(ukko_wire_header_t) + 8 + n;
    size_t cap = wn + UKKO_WIRE_SEAL_OVERHEAD;
    uint8_t *sealed = malloc(cap + 4);
    uint8_t *wrapped = malloc(wn);
    if (!sealed || !wrapped) {
        free(sealed);
        free(wrapped);
        return UKKO_ENOMEM;
    }
    ukko_buf_t w;
    ukko_buf_init(&w, wn);
    sh_put_header(&w, UKKO_WIRE_SH_SEQ, &s->self, 0);
    sh_put_u64(&w, l->next_seq);
    (void)ukko_buf_append(&w, body, n);
    memcpy(wrapped, w.data, w.len);
    ukko_buf_destroy(&w);
    size_t len = 0;
    int rc = cluster__seal(&c->keyring, c->cc->name, wrapped, wn, sealed + 4, cap, &len);
    free(wrapped);
    if (rc == 0 && len > (size_t)c->cc->max_sync_bytes)
        rc = UKKO_E2BIG; /* the receiver would refuse it */
    bool node_full = rc == 0 && s->link_bytes + len + 4 > (size_t)s->cfg->link_buffer_bytes;
    if (node_full) {
        rc = UKKO_EAGAIN; /* every link together holds all the node allows */
        int64_t now = ukko_now_ms();
        if (now - s->last_link_full_log >= 5000) {
            s->last_link_full_log = now;
            ukko_logf(UKKO_LOG_WARN, "sharding", UKKO_FIELDS(UKKO_FI("bytes", s->link_bytes)),
                      "this node's sharding links hold %zu bytes their members have not "
                      "acknowledged: frames are refused (UKKO_EAGAIN) until they do; raise "
                      "cluster.sharding.link-buffer-bytes",
                      s->link_bytes);
        }
    } else if (rc == 0) {
        sealed[0] = (uint8_t)(len >> 24);
        sealed[1] = (uint8_t)(len >> 16);
        sealed[2] = (uint8_t)(len >> 8);
        sealed[3] = (uint8_t)len;
        rc = ukko_buf_append(&l->out, sealed, len + 4);
        if (rc == UKKO_E2BIG)
            rc = UKKO_EAGAIN; /* the queue is full, not the frame too large */
        if (rc == 0)
            s->link_bytes += len + 4;
    }
    free(sealed);
    if (rc < 0) {
        if (!l->full_logged && rc == UKKO_EAGAIN && !node_full) {
            l->full_logged = true;
            char a[64];
            cluster__addr_format(&l->addr, a, sizeof(a));
            ukko_logf(UKKO_LOG_WARN, "sharding", UKKO_FIELDS(UKKO_FS("peer", a)),
                      "the link to %s holds %zu bytes it has not acknowledged: frames to it "
                      "are refused until it does (8 x cluster.max-sync-bytes)",
                      a, l->out.len);
        }
        return rc;
    }
    l->next_seq++;
    l->last_used = ukko_now_ms();
    if (l->state == L_IDLE) {
        if (!ev_is_active(&l->retry))
            link_connect(l);
    } else if (l->state == L_UP && l->off < l->out.len) {
        link_write(l);
        if (l->fd >= 0 && l->off < l->out.len) {
            ev_io_stop(s->loop, &l->io);
            ev_io_set(&l->io, l->fd, EV_READ | EV_WRITE);
            ev_io_start(s->loop, &l->io);
        }
    }
    return 0;
}

/* Links to addresses that hold no member any more are freed with what they
 * held (counted). A link idle for cluster.sharding.link-idle-timeout only
 * closes its connection and gives back its buffers: the object stays, and
 * with it the frame numbers, because the receiver remembers the last number
 * it had from this process and drops every frame at or below it as already
 * had (and acknowledges it). Numbering again from 1 after an idle spell
 * lost every frame up to the old number. The object goes only with the
 * member, whose next incarnation (a new uid) remembers nothing. */
void sh__links_prune(sh_t *s)
{
    cluster__mship_t *m = cluster__mship_of(s->c);
    int64_t now = ukko_now_ms();
    int64_t idle_ms = s->cfg->link_idle_ms > 0 ? s->cfg->link_idle_ms : 60000;
    for (sh_link_t **pp = &s->links; *pp;) {
        sh_link_t *l = *pp;
        const cluster__member_t *mem = cluster__mship_find(m, &l->addr);
        bool gone = !mem || mem->status >= UKKO_MEMBER_DOWN;
        if (!gone) {
            if (!l->out.len && l->fd >= 0 && now - l->last_used > idle_ms) {
                link_close(l);
                ev_timer_stop(s->loop, &l->retry);
                ukko_buf_destroy(&l->out);
                ukko_buf_destroy(&l->in);
                s->links_idle_closed++;
            }
            pp = &l->next;
            continue;
        }
        if (l->out.len)
            s->link_drops++;
        s->link_bytes -= l->out.len;
        *pp = l->next;
        link_close(l);
        ev_timer_stop(s->loop, &l->retry);
        ukko_buf_destroy(&l->out);
        ukko_buf_destroy(&l->in);
        free(l);
    }
}

void sh__links_free(sh_t *s)
{
    while (s->links) {
        sh_link_t *l = s->links;
        s->links = l->next;
        if (l->fd >= 0) {
            ev_io_stop(s->loop, &l->io);
            close(l->fd);
        }
        ev_timer_stop(s->loop, &l->retry);
        ukko_buf_destroy(&l->out);
        ukko_buf_destroy(&l->in);
        free(l);
    }
}
