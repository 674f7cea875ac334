/* shutdown.h: the node's orderly stop in named phases (shutdown.c), embedded
 * in the node (node.c) and reached by its tests through the public node
 * API. Not part of the public interface. Loop thread only. */
#ifndef UKKO_SHUTDOWN_H
#define UKKO_SHUTDOWN_H

#include "ukko.h"

#include <ev.h>

#define UKKO__MAX_STOP_TASKS 64

struct ukko__stop;

struct ukko_stop_task {
    struct ukko__stop *owner;
    ukko_phase_t phase;
    char name[48];
    ukko_stop_task_fn fn;
    void *ud;
    bool started, done;
};

/* finish(node, code) ends the stop: the node breaks its loop with code. */
typedef void (*ukko__stop_finish_fn)(ukko_node_t *node, int code);

typedef struct ukko__stop {
    struct ev_loop *loop;
    ukko_node_t *node;
    ukko__stop_finish_fn finish;
    ukko_stop_task_t tasks[UKKO__MAX_STOP_TASKS]; /* in the order added: pointers stay valid */
    size_t ntasks;
    int64_t phase_timeout_ms[UKKO_PHASE_COUNT];
    int64_t total_ms;   /* cluster.shutdown-timeout */
    bool running, over; /* over: finish was called */
    ukko_stop_reason_t reason;
    int phase;          /* running now (UKKO_PHASE_COUNT: all done) */
    size_t pending;     /* tasks of the phase not done yet */
    bool phase_open;    /* its tasks were started and it has not ended */
    int64_t t0_ms, phase_t0_ms, deadline_ms, phase_deadline_ms;
    ev_timer total_timer, phase_timer;
    ev_idle step; /* moves on from the loop, never inside a task's callback chain */
} ukko__stop_t;

void ukko__stop_init(ukko__stop_t *s, struct ev_loop *loop, ukko_node_t *node,
                     ukko__stop_finish_fn finish, int64_t total_ms);
/* Stops the watchers (the node is being freed). */
void ukko__stop_destroy(ukko__stop_t *s);
/* Ends the stop where it is (a second signal): no task runs after this. */
void ukko__stop_abort(ukko__stop_t *s);
int ukko__stop_add(ukko__stop_t *s, ukko_phase_t phase, const char *name, ukko_stop_task_fn fn,
                   void *ud);
void ukko__stop_begin(ukko__stop_t *s, ukko_stop_reason_t reason, const char *why);
/* The phase and the first unfinished task of it, for the log line of a stop
 * cut short ("" when none). */
void ukko__stop_describe(const ukko__stop_t *s, char *out, size_t outlen);

#endif
