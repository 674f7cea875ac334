/* transport_ev.c: the membership's network on the node's libev loop: one UDP
 * socket for gossip (with IP_RECVERR, so an ICMP "port unreachable" reaches
 * the core as a hint), one TCP listener and short TCP exchanges for state
 * sync (length-prefixed sealed frames), and the timer that runs the core.
 * Loop thread only. Invariants: a body reaches the core only after it
 * opened under the keyring; a connection is freed only from the reaper,
 * never inside its own callback; every frame is capped. */
#include "runtime.h"
#include "sharding_internal.h"

#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { C_CONNECTING, C_SENDING, C_READING, C_DRAINING, C_DONE };

struct rt_conn {
    ukko_cluster_t *c;
    int fd;
    ev_io io;
    ev_timer timer;
    bool outbound, got_reply, watched;
    bool stream; /* an inbound sharding link (sharding_link.c is the other end) */
    uint64_t ack_due, ack_sent; /* stream: the last frame to acknowledge, and acknowledged */
    int stage;
    cluster__addr_t peer;
    ukko_buf_t in, out;
    size_t out_off;
    rt_conn_t *next;
};

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents);

/* ------------------------------------------------------------ timer */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    cluster__mship_tick(c->m);
    cluster__transport_rearm(c);
}

void cluster__transport_rearm(ukko_cluster_t *c)
{
    if (!c->started || c->stopped)
        return;
    int64_t now = ukko_now_ms();
    int64_t next = cluster__mship_next(c->m);
    double delay = next > now ? (double)(next - now) / 1000.0 : 0.0;
    ev_timer_stop(c->loop, &c->tick);
    ev_timer_set(&c->tick, delay, 0.);
    ev_timer_start(c->loop, &c->tick);
}

/* -------------------------------------------------------------- UDP */

void cluster__env_send(void *ud, const cluster__addr_t *to, const uint8_t *body, size_t n)
{
    ukko_cluster_t *c = ud;
    if (c->udp_fd < 0)
        return;
    size_t len;
    if (cluster__seal(&c->keyring, c->cc->name, body, n, c->txbuf, RT_UDP_BUF, &len) < 0)
        return;
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)cluster__addr_to_sockaddr(to, &ss);
    /* A send can fail with a pending ICMP error of an earlier one; that
     * error was (or will be) read from the error queue: nothing to do. */
    (void)sendto(c->udp_fd, c->txbuf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
}

/* ICMP errors queued on the socket: each names the destination of a packet
 * that could not be delivered. */
static void drain_errors(ukko_cluster_t *c)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        char ctrl[512];
        uint8_t data[64];
        struct iovec iov = {data, sizeof(data)};
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_name = &ss;
        msg.msg_namelen = sizeof(ss);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof(ctrl);
        if (recvmsg(c->udp_fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
            return;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                  (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
                continue;
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
            if (ee.ee_errno == ECONNREFUSED && msg.msg_namelen > 0) {
                cluster__addr_t a;
                cluster__addr_from_sockaddr(&ss, &a);
                cluster__mship_unreachable(c->m, &a);
            }
        }
    }
}

static void on_udp(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    cluster__stats_t *st = cluster__mship_stats(c->m);
    drain_errors(c);
    /* A bounded batch per wake-up: the loop has other work. */
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(c->udp_fd, c->rxbuf, RT_UDP_BUF, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
                drain_errors(c);
                continue;
            }
            break;
        }
        if ((size_t)n > (size_t)c->cc->mtu) {
            st->drop_oversize++;
            continue;
        }
        int len = cluster__open(&c->keyring, c->cc->name, c->rxbuf, (size_t)n, c->body,
                                RT_UDP_BUF);
        if (len < 0) {
            if (len == UKKO_EINVAL)
                st->drop_auth++;
            else
                st->drop_decode++;
            continue;
        }
        cluster__mship_recv(c->m, c->body, (size_t)len);
    }
    cluster__transport_rearm(c);
}

/* -------------------------------------------------------------- TCP */

static void conn_close(rt_conn_t *k)
{
    if (k->stage == C_DONE)
        return;
    ev_io_stop(k->c->loop, &k->io);
    ev_timer_stop(k->c->loop, &k->timer);
    close(k->fd);
    k->fd = -1;
    k->stage = C_DONE;
}

static void reap(ukko_cluster_t *c)
{
    for (rt_conn_t **pp = &c->conns; *pp;) {
        rt_conn_t *k = *pp;
        if (k->stage != C_DONE) {
            pp = &k->next;
            continue;
        }
        *pp = k->next;
        ukko_buf_destroy(&k->in);
        ukko_buf_destroy(&k->out);
        free(k);
        c->nconns--;
    }
}

/* An outbound sync that ends without a reply tells the core why. */
static void out_failed(rt_conn_t *k, bool refused)
{
    if (k->outbound && !k->got_reply) {
        k->got_reply = true;
        cluster__mship_sync_failed(k->c->m, &k->peer, refused);
    }
    conn_close(k);
}

static int queue_frame(rt_conn_t *k, const uint8_t *body, size_t n)
{
    ukko_cluster_t *c = k->c;
    size_t cap = n + UKKO_WIRE_SEAL_OVERHEAD;
    uint8_t *sealed = malloc(cap + 4);
    size_t len = 0;
    int rc = sealed ? cluster__seal(&c->keyring, c->cc->name, body, n, sealed + 4, cap, &len)
                    : UKKO_ENOMEM;
    if (rc == 0) {
        sealed[0] = (uint8_t)(len >> 24);
        sealed[1] = (uint8_t)(len >> 16);
        sealed[2] = (uint8_t)(len >> 8);
        sealed[3] = (uint8_t)len;
        rc = ukko_buf_append(&k->out, sealed, len + 4);
    }
    free(sealed);
    return rc;
}

static void set_events(rt_conn_t *k, int events)
{
    ev_io_stop(k->c->loop, &k->io);
    ev_io_set(&k->io, k->fd, events);
    ev_io_start(k->c->loop, &k->io);
}

/* A whole frame in k->in: its opened body into *body (caller frees). 0 when
 * more bytes are needed, 1 with a frame, < 0 on a broken or oversize one. */
static int take_frame(rt_conn_t *k, uint8_t **body, size_t *blen)
{
    if (k->in.len < 4)
        return 0;
    const uint8_t *p = (const uint8_t *)k->in.data;
    size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (len > (size_t)k->c->cc->max_sync_bytes || len < sizeof(ukko_wire_envelope_t))
        return UKKO_E2BIG;
    if (k->in.len < 4 + len)
        return 0;
    uint8_t *out = malloc(len ? len : 1);
    if (!out)
        return UKKO_ENOMEM;
    int n = cluster__open(&k->c->keyring, k->c->cc->name, p + 4, len, out, len);
    ukko_buf_consume(&k->in, 4 + len);
    if (n < 0) {
        cluster__stats_t *st = cluster__mship_stats(k->c->m);
        if (n == UKKO_EINVAL)
            st->drop_auth++;
        else
            st->drop_decode++;
        free(out);
        return n;
    }
    *body = out;
    *blen = (size_t)n;
    return 1;
}

static void handle_frame(rt_conn_t *k, const uint8_t *body, size_t n)
{
    ukko_cluster_t *c = k->c;
    if (k->outbound) {
        ukko_buf_t push;
        ukko_buf_init(&push, (size_t)c->cc->max_sync_bytes);
        k->got_reply = true;
        cluster__mship_sync_reply(c->m, &k->peer, body, n, &push);
        if (push.len && queue_frame(k, (const uint8_t *)push.data, push.len) == 0) {
            k->stage = C_SENDING;
            set_events(k, EV_WRITE);
        } else {
            conn_close(k);
        }
        ukko_buf_destroy(&push);
        return;
    }
    if (n >= 1 && body[0] >= SH_KIND_FIRST && body[0] <= SH_KIND_LAST &&
        (k->stage == C_READING || k->stream)) {
        /* A member's sharding link: long-lived, frames in the order sent,
         * none answered on it (answers travel on this node's own link). */
        if (!k->stream) {
            ev_timer_stop(c->loop, &k->timer);
            k->stage = C_DRAINING;
            k->stream = true;
            /* No timer watches it any more: a peer whose host vanished
             * without a FIN is found by keepalive (about a minute), so
             * dead links never fill the connection cap. */
            int one = 1, idle = 30, intvl = 10, cnt = 3;
            (void)setsockopt(k->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            (void)setsockopt(k->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            (void)setsockopt(k->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
            (void)setsockopt(k->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
        uint64_t a = cluster__sharding_frame(c, body, n);
        if (a > k->ack_due)
            k->ack_due = a;
        return;
    }
    if (k->stage == C_READING && n >= 1 && body[0] == UKKO_WIRE_WATCH) {
        /* A member watching us: keep the connection, idle, for as long as
         * it likes; our death closes it and tells it at once. */
        ev_timer_stop(c->loop, &k->timer);
        k->stage = C_DRAINING;
        k->watched = true;
        return;
    }
    if (k->stage == C_READING) {
        ukko_buf_t reply;
        ukko_buf_init(&reply, (size_t)c->cc->max_sync_bytes);
        cluster__mship_sync_serve(c->m, body, n, &reply);
        if (reply.len && queue_frame(k, (const uint8_t *)reply.data, reply.len) == 0) {
            k->stage = C_SENDING;
            set_events(k, EV_WRITE);
        } else {
            conn_close(k);
        }
        ukko_buf_destroy(&reply);
        return;
    }
    /* C_DRAINING: the initiator's push */
    if (k->watched || k->stream)
        return; /* nothing else is expected on a watch or a sharding link */
    cluster__mship_sync_push(c->m, body, n);
    conn_close(k);
}

/* A sharding link's sender learns what arrived: one small ACK frame per
 * read burst, written on the same connection. The socket's send buffer
 * holds nothing else, so it goes whole; if it ever does not, the
 * connection is closed and the sender writes again what was not covered. */
static void stream_ack(rt_conn_t *k)
{
    ukko_cluster_t *c = k->c;
    uint8_t body[128], frame[4 + 128 + UKKO_WIRE_SEAL_OVERHEAD];
    size_t bl = cluster__sharding_ack_body(c, k->ack_due, body, sizeof(body));
    size_t len = 0;
    if (!bl || cluster__seal(&c->keyring, c->cc->name, body, bl, frame + 4, sizeof(frame) - 4,
                             &len) < 0)
        return;
    frame[0] = (uint8_t)(len >> 24);
    frame[1] = (uint8_t)(len >> 16);
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    ssize_t n = send(k->fd, frame, len + 4, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != (ssize_t)(len + 4)) {
        conn_close(k);
        return;
    }
    k->ack_sent = k->ack_due;
}

static void conn_read(rt_conn_t *k)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            out_failed(k, false);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (k->stream && k->ack_due > k->ack_sent)
                    stream_ack(k);
                break;
            }
            out_failed(k, errno == ECONNREFUSED);
            return;
        }
        if (ukko_buf_append(&k->in, buf, (size_t)n) < 0) {
            out_failed(k, false); /* over the frame cap */
            return;
        }
        uint8_t *body = NULL;
        size_t blen = 0;
        int rc;
        while (k->stage != C_DONE && (rc = take_frame(k, &body, &blen)) != 0) {
            if (rc < 0) {
                out_failed(k, false);
                return;
            }
            handle_frame(k, body, blen);
            free(body);
            if (k->stage == C_SENDING)
                return; /* reply queued: write it before reading more */
        }
        if (k->stage == C_DONE)
            return;
    }
}

static void conn_write(rt_conn_t *k)
{
    while (k->out_off < k->out.len) {
        ssize_t n = send(k->fd, k->out.data + k->out_off, k->out.len - k->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            out_failed(k, errno == ECONNREFUSED);
            return;
        }
        k->out_off += (size_t)n;
    }
    ukko_buf_reset(&k->out);
    k->out_off = 0;
    if (k->outbound && k->got_reply) {
        conn_close(k); /* the push went out: done */
        return;
    }
    /* Outbound: wait for the reply. Inbound: the reply went out; a state
     * reply may bring the initiator's push, anything else ends here. */
    k->stage = k->outbound ? C_READING : C_DRAINING;
    set_events(k, EV_READ);
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    rt_conn_t *k = w->data;
    ukko_cluster_t *c = k->c;
    if (k->stage == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            out_failed(k, err == ECONNREFUSED);
            goto out;
        }
        k->stage = C_SENDING;
    }
    if ((revents & EV_WRITE) && k->stage == C_SENDING)
        conn_write(k);
    else if ((revents & EV_READ) && (k->stage == C_READING || k->stage == C_DRAINING))
        conn_read(k);
out:
    cluster__transport_rearm(c);
}

static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_conn_t *k = w->data;
    out_failed(k, false);
    cluster__transport_rearm(k->c);
}

static rt_conn_t *conn_new(ukko_cluster_t *c, int fd, bool outbound, int stage, int events)
{
    rt_conn_t *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->c = c;
    k->fd = fd;
    k->outbound = outbound;
    k->stage = stage;
    /* + a frame header and the seal: a whole capped frame fits */
    ukko_buf_init(&k->in, (size_t)c->cc->max_sync_bytes + 64);
    ukko_buf_init(&k->out, (size_t)c->cc->max_sync_bytes * 2 + 64);
    ev_io_init(&k->io, conn_cb, fd, events);
    k->io.data = k;
    ev_timer_init(&k->timer, conn_timeout, (double)c->cc->sync_timeout_ms / 1000.0, 0.);
    k->timer.data = k;
    ev_io_start(c->loop, &k->io);
    ev_timer_start(c->loop, &k->timer);
    k->next = c->conns;
    c->conns = k;
    c->nconns++;
    return k;
}

void cluster__env_sync(void *ud, const cluster__addr_t *to, const uint8_t *req, size_t n)
{
    ukko_cluster_t *c = ud;
    reap(c);
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)cluster__addr_to_sockaddr(to, &ss);
    int fd = c->nconns < RT_MAX_CONNS * 2
                 ? socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
                 : -1;
    if (fd < 0) {
        cluster__mship_sync_failed(c->m, to, false);
        return;
    }
    int rc = connect(fd, (struct sockaddr *)&ss, sl);
    if (rc < 0 && errno != EINPROGRESS) {
        bool refused = errno == ECONNREFUSED;
        close(fd);
        cluster__mship_sync_failed(c->m, to, refused);
        return;
    }
    rt_conn_t *k = conn_new(c, fd, true, rc == 0 ? C_SENDING : C_CONNECTING, EV_WRITE);
    if (!k) {
        close(fd);
        cluster__mship_sync_failed(c->m, to, false);
        return;
    }
    k->peer = *to;
    if (queue_frame(k, req, n) < 0)
        out_failed(k, false);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    reap(c);
    for (int i = 0; i < 16; i++) {
        int fd = accept4(c->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        if (c->nconns >= RT_MAX_CONNS * 2 || !conn_new(c, fd, false, C_READING, EV_READ))
            close(fd); /* at the cap: the peer retries at its next sync */
    }
}

/* ------------------------------------------------------------ watch */

static void watch_close(ukko_cluster_t *c, int i)
{
    if (!c->watch[i].open)
        return;
    ev_io_stop(c->loop, &c->watch[i].io);
    close(c->watch[i].fd);
    c->watch[i].open = false;
}

/* The watched member's end closed (or refused): its process may be gone.
 * The core checks with a connect; only a refusal condemns it. */
static void on_watch(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    ukko_cluster_t *c = w->data;
    int i = 0;
    while (i < RT_WATCH && &c->watch[i].io != w)
        i++;
    if (i == RT_WATCH)
        return;
    bool gone = false;
    if ((revents & EV_WRITE) && c->watch[i].pending) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->watch[i].fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            gone = true;
        } else {
            /* Connected: the small frame fits the empty socket buffer. */
            ssize_t n = send(c->watch[i].fd, c->watch[i].frame, c->watch[i].frame_len,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            gone = n != (ssize_t)c->watch[i].frame_len;
            c->watch[i].pending = false;
            ev_io_stop(c->loop, w);
            ev_io_set(w, c->watch[i].fd, EV_READ);
            ev_io_start(c->loop, w);
        }
    } else if (revents & EV_READ) {
        char buf[512];
        ssize_t n = recv(c->watch[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
        gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    if (!gone)
        return;
    cluster__addr_t a = c->watch[i].addr;
    watch_close(c, i);
    cluster__mship_unreachable(c->m, &a);
    cluster__transport_rearm(c);
}

static void watch_open(ukko_cluster_t *c, int i, const cluster__addr_t *a)
{
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)cluster__addr_to_sockaddr(a, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        close(fd);
        return; /* refused now: the probes and the core find out */
    }
    /* The WATCH frame goes into the socket buffer and leaves once connected. */
    uint8_t hdr[sizeof(ukko_wire_header_t)], frame[4 + sizeof(hdr) + UKKO_WIRE_SEAL_OVERHEAD];
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, hdr, sizeof(hdr));
    ukko_wire_hdr_t h;
    memset(&h, 0, sizeof(h));
    h.kind = UKKO_WIRE_WATCH;
    h.from = c->self;
    memcpy(h.uid, cluster__ids_at(c->ids, cluster__mship_self(c->m))->uid, CLUSTER__UID_LEN);
    ukko_wire_put_header(&w, &h);
    c->watch[i].addr = *a;
    c->watch[i].fd = fd;
    c->watch[i].open = true;
    size_t len = 0;
    if (cluster__seal(&c->keyring, c->cc->name, hdr, w.len, frame + 4, sizeof(frame) - 4,
                      &len) == 0) {
        frame[0] = (uint8_t)(len >> 24);
        frame[1] = (uint8_t)(len >> 16);
        frame[2] = (uint8_t)(len >> 8);
        frame[3] = (uint8_t)len;
        c->watch[i].pending = true;
        memcpy(c->watch[i].frame, frame, len + 4);
        c->watch[i].frame_len = len + 4;
    }
    ev_io_init(&c->watch[i].io, on_watch, fd, EV_WRITE);
    c->watch[i].io.data = c;
    ev_io_start(c->loop, &c->watch[i].io);
}

/* Once a second: watch the members that follow us in address order. */
static void on_watch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    uint32_t want[RT_WATCH];
    size_t n = cluster__mship_in_cluster(c->m) &&
                       cluster__mship_self_status(c->m) < UKKO_MEMBER_DOWN
                   ? cluster__mship_watch_targets(c->m, want, RT_WATCH)
                   : 0;
    for (int i = 0; i < RT_WATCH; i++) {
        if (!c->watch[i].open)
            continue;
        bool keep = false;
        for (size_t k = 0; k < n; k++)
            keep = keep || cluster__addr_eq(cluster__ids_addr_at(c->ids, want[k]), &c->watch[i].addr);
        if (!keep)
            watch_close(c, i);
    }
    for (size_t k = 0; k < n; k++) {
        const cluster__addr_t *a = cluster__ids_addr_at(c->ids, want[k]);
        bool have = false;
        int slot = -1;
        for (int i = 0; i < RT_WATCH; i++) {
            if (c->watch[i].open && cluster__addr_eq(&c->watch[i].addr, a))
                have = true;
            else if (!c->watch[i].open && slot < 0)
                slot = i;
        }
        if (!have && slot >= 0)
            watch_open(c, slot, a);
    }
}

/* ------------------------------------------------------------ start */

static int bind_socket(ukko_cluster_t *c, int type, int *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)cluster__addr_to_sockaddr(&c->self, &ss);
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        if (ss.ss_family == AF_INET)
            setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof(one));
        else
            setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof(one));
        int sz = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || (type == SOCK_STREAM && listen(fd, 128) < 0)) {
        int err = -errno;
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

int cluster__transport_start(ukko_cluster_t *c)
{
    c->rxbuf = malloc(RT_UDP_BUF);
    c->txbuf = malloc(RT_UDP_BUF);
    c->body = malloc(RT_UDP_BUF);
    if (!c->rxbuf || !c->txbuf || !c->body)
        return UKKO_ENOMEM;
    char a[64];
    cluster__addr_format(&c->self, a, sizeof(a));
    int rc = bind_socket(c, SOCK_DGRAM, &c->udp_fd);
    if (rc == 0)
        rc = bind_socket(c, SOCK_STREAM, &c->tcp_fd);
    if (rc < 0) {
        ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("address", a)),
                  "cannot listen on %s (UDP and TCP): %s: set cluster.hostname to an address "
                  "of this host and cluster.port to a free port",
                  a, ukko_strerror(rc));
        return rc;
    }
    ev_io_init(&c->udp_io, on_udp, c->udp_fd, EV_READ);
    c->udp_io.data = c;
    ev_io_start(c->loop, &c->udp_io);
    ev_io_init(&c->tcp_io, on_accept, c->tcp_fd, EV_READ);
    c->tcp_io.data = c;
    ev_io_start(c->loop, &c->tcp_io);
    ev_init(&c->tick, on_tick);
    c->tick.data = c;
    ev_timer_init(&c->watch_timer, on_watch_timer, 1.0, 1.0);
    c->watch_timer.data = c;
    ev_timer_start(c->loop, &c->watch_timer);
    return 0;
}

void cluster__transport_stop(ukko_cluster_t *c)
{
    ev_timer_stop(c->loop, &c->tick);
    ev_timer_stop(c->loop, &c->watch_timer);
    for (int i = 0; i < RT_WATCH; i++)
        watch_close(c, i);
    if (c->udp_fd >= 0) {
        ev_io_stop(c->loop, &c->udp_io);
        close(c->udp_fd);
        c->udp_fd = -1;
    }
    if (c->tcp_fd >= 0) {
        ev_io_stop(c->loop, &c->tcp_io);
        close(c->tcp_fd);
        c->tcp_fd = -1;
    }
    for (rt_conn_t *k = c->conns; k; k = k->next)
        conn_close(k);
    reap(c);
    free(c->rxbuf);
    free(c->txbuf);
    free(c->body);
    c->rxbuf = c->txbuf = c->body = NULL;
}
