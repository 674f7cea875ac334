/* runtime.h: the membership of a real node: the core, its keyring, the
 * sockets and timers that carry it on the node's libev loop, its event
 * subscribers and its leave. Private to cluster.c, transport_ev.c, routes.c,
 * leave.c and module.c. Loop thread only. */
#ifndef UKKO_CLUSTER_RUNTIME_H
#define UKKO_CLUSTER_RUNTIME_H

#include "cluster_internal.h"

#include <ev.h>

#define RT_MAX_CONNS 64
#define RT_UDP_BUF 65536
#define RT_WATCH 3 /* members each node watches over an idle TCP connection */

typedef struct rt_conn rt_conn_t;

struct ukko_cluster {
    ukko_node_t *node;
    struct ev_loop *loop;
    const ukko_cluster_config_t *cc;
    cluster__params_t params;
    cluster__ids_t *ids;
    cluster__mship_t *m;
    cluster__addr_t self;
    cluster__keyring_t keyring;
    uint64_t keyring_reloads, keyring_errors;
    ev_stat keyring_watch;
    bool keyring_watching;

    /* transport */
    int udp_fd, tcp_fd;
    ev_io udp_io, tcp_io;
    ev_timer tick;
    ev_timer leave_flush;
    ev_timer watch_timer;
    struct {
        cluster__addr_t addr;
        int fd;
        ev_io io;
        bool open, pending; /* pending: the WATCH frame not yet written */
        uint8_t frame[4 + sizeof(ukko_wire_header_t) + UKKO_WIRE_SEAL_OVERHEAD];
        size_t frame_len;
    } watch[RT_WATCH];
    rt_conn_t *conns;
    size_t nconns;

    /* membership events: delivered before the loop sleeps */
    cluster__events_t *events;
    ev_prepare events_flush;

    /* bootstrap through discovery (NULL: cluster.seed-nodes) and the leave */
    struct cluster__bootstrap *bootstrap;
    bool leaving;   /* the cluster-leave task leaves: Leaving, then Exiting, then gone */
    bool exiting;   /* Exiting: flushing it, then the farewell */
    bool stop_tasks_added;
    ev_timer leave_deadline;
    ukko_stop_task_t *leave_task; /* cluster-leave, until this node is Exiting */
    ukko_stop_task_t *exit_task;  /* cluster-exiting, until the farewell is said */
    uint8_t *rxbuf, *txbuf, *body; /* RT_UDP_BUF each */
    bool started, stopped;
    struct ukko_sharding *sharding; /* borrowed: ukko_sharding_new attaches it */
};

/* leave.c: this node's own status changed (from env.changed). */
void cluster__leave_self_changed(ukko_cluster_t *c, int old_status, int status);

/* transport_ev.c */
int cluster__transport_start(ukko_cluster_t *c);
void cluster__transport_stop(ukko_cluster_t *c);
void cluster__transport_rearm(ukko_cluster_t *c);
void cluster__env_send(void *ud, const cluster__addr_t *to, const uint8_t *body, size_t n);
void cluster__env_sync(void *ud, const cluster__addr_t *to, const uint8_t *req, size_t n);

/* sharding.c: a sharding frame (kinds SH_KIND_FIRST..SH_KIND_LAST) arrived
 * on an inbound stream connection, opened. Returns the sequence number to
 * acknowledge to its sender (0: none), which the transport writes back on
 * that connection as the body cluster__sharding_ack_body makes (into out,
 * cap bytes; returns its length, 0 when there is no sharding). */
uint64_t cluster__sharding_frame(ukko_cluster_t *c, const uint8_t *body, size_t n);
size_t cluster__sharding_ack_body(ukko_cluster_t *c, uint64_t seq, uint8_t *out, size_t cap);

#endif
