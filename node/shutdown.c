/* shutdown.c: the node's orderly stop in named phases, as Pekko's
 * coordinated shutdown: tasks added per phase by any module, started in
 * order, asynchronous with a done call, a timeout per phase and one for the
 * whole stop. Loop thread only. Invariants: phases run in their order, each
 * at most once; a phase ends only when all its tasks are done or its
 * timeout passed; the stop moves on from the loop (an ev_idle), never from
 * inside a task's own callback chain. */
#include "shutdown.h"

#include <stdio.h>
#include <string.h>

static const char *const phase_names[UKKO_PHASE_COUNT] = {
    "before-service-unbind",
    "service-unbind",
    "service-requests-done",
    "cluster-sharding-shutdown-region",
    "cluster-leave",
    "cluster-exiting",
    "cluster-exiting-done",
    "before-actor-system-terminate",
    "actor-system-terminate",
};

/* Pekko's defaults, but cluster-leave: a Leaving node waits for every member
 * to see it before the leader makes it Exiting, which a large cluster, or
 * one with a member unreachable, takes longer than 5 s to do. */
static const int64_t default_timeout_ms[UKKO_PHASE_COUNT] = {
    5000, 5000, 5000, 10000, 20000, 10000, 5000, 5000, 10000,
};

const char *ukko_phase_name(ukko_phase_t phase)
{
    return (int)phase >= 0 && phase < UKKO_PHASE_COUNT ? phase_names[phase] : "?";
}

const char *ukko_stop_reason_name(ukko_stop_reason_t reason)
{
    switch (reason) {
    case UKKO_STOP_ORDERLY: return "orderly";
    case UKKO_STOP_DOWNED: return "downed";
    case UKKO_STOP_FAILURE: return "failure";
    }
    return "?";
}

/* A downed node must not hand anything off: the others already treat it as
 * gone, and take over its shards after their margin. */
static bool skipped(const ukko__stop_t *s, int phase)
{
    return s->reason == UKKO_STOP_DOWNED &&
           (phase == UKKO_PHASE_CLUSTER_LEAVE || phase == UKKO_PHASE_CLUSTER_EXITING);
}

static void finish(ukko__stop_t *s, int code)
{
    if (s->over)
        return;
    s->over = true;
    ev_timer_stop(s->loop, &s->total_timer);
    ev_timer_stop(s->loop, &s->phase_timer);
    ev_idle_stop(s->loop, &s->step);
    s->finish(s->node, code);
}

/* The names of the tasks of the open phase that are not done, quoted. */
static void unfinished(const ukko__stop_t *s, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < s->ntasks && len < outlen; i++) {
        const ukko_stop_task_t *t = &s->tasks[i];
        if ((int)t->phase != s->phase || !t->started || t->done)
            continue;
        int n = snprintf(out + len, outlen - len, "%s\"%s\"", len ? ", " : "", t->name);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static void end_phase(ukko__stop_t *s, bool timed_out)
{
    ev_timer_stop(s->loop, &s->phase_timer);
    int64_t took = ukko_now_ms() - s->phase_t0_ms;
    const char *name = phase_names[s->phase];
    if (timed_out) {
        char names[512], d[32];
        unfinished(s, names, sizeof(names));
        ukko_format_duration(s->phase_deadline_ms - s->phase_t0_ms, d, sizeof(d));
        ukko_logf(UKKO_LOG_WARN, "node",
                  UKKO_FIELDS(UKKO_FS("phase", name), UKKO_FI("took_ms", took),
                              UKKO_FI("unfinished", s->pending)),
                  "stop phase %s did not finish within %s: task(s) %s still running; going on "
                  "with the stop",
                  name, d, names);
    } else if (s->pending) {
        ukko_logf(UKKO_LOG_DEBUG, "node", UKKO_FIELDS(UKKO_FS("phase", name)),
                  "stop phase %s cut short: this node was downed (reason %s)", name,
                  ukko_stop_reason_name(s->reason));
    } else {
        ukko_logf(UKKO_LOG_DEBUG, "node", UKKO_FIELDS(UKKO_FS("phase", name), UKKO_FI("took_ms", took)),
                  "stop phase %s done in %lld ms", name, (long long)took);
    }
    s->phase_open = false;
    s->pending = 0;
    s->phase++;
}

static void done_all(ukko__stop_t *s)
{
    int64_t took = ukko_now_ms() - s->t0_ms;
    char d[32];
    ukko_format_duration(took, d, sizeof(d));
    const char *reason = ukko_stop_reason_name(s->reason);
    if (s->reason == UKKO_STOP_ORDERLY)
        ukko_logf(UKKO_LOG_INFO, "node", UKKO_FIELDS(UKKO_FS("reason", reason), UKKO_FI("took_ms", took)),
                  "stopped in order in %s; exiting", d);
    else
        ukko_logf(UKKO_LOG_INFO, "node", UKKO_FIELDS(UKKO_FS("reason", reason), UKKO_FI("took_ms", took)),
                  "stopped in %s (reason %s); exiting with code 1 so that the pod is restarted",
                  d, reason);
    finish(s, s->reason == UKKO_STOP_ORDERLY ? 0 : 1);
}

/* Moves through the phases as far as their tasks allow. */
static void advance(ukko__stop_t *s)
{
    while (!s->over) {
        if (s->phase_open) {
            if (s->pending && !skipped(s, s->phase))
                return; /* a task's done (or the phase timer) resumes */
            end_phase(s, false);
            continue;
        }
        if (s->phase >= UKKO_PHASE_COUNT) {
            done_all(s);
            return;
        }
        const char *name = phase_names[s->phase];
        if (skipped(s, s->phase)) {
            ukko_logf(UKKO_LOG_DEBUG, "node", UKKO_FIELDS(UKKO_FS("phase", name)),
                      "stop phase %s skipped (reason %s)", name, ukko_stop_reason_name(s->reason));
            s->phase++;
            continue;
        }
        size_t n = 0;
        for (size_t i = 0; i < s->ntasks; i++)
            n += (int)s->tasks[i].phase == s->phase;
        s->phase_t0_ms = ukko_now_ms();
        if (n == 0) {
            ukko_logf(UKKO_LOG_DEBUG, "node", UKKO_FIELDS(UKKO_FS("phase", name)),
                      "stop phase %s: no tasks", name);
            s->phase++;
            continue;
        }
        s->phase_open = true;
        s->pending = n;
        int64_t end = s->phase_t0_ms + s->phase_timeout_ms[s->phase];
        s->phase_deadline_ms = end < s->deadline_ms ? end : s->deadline_ms;
        ev_timer_set(&s->phase_timer, (double)(s->phase_deadline_ms - s->phase_t0_ms) / 1000.0, 0.);
        ev_timer_start(s->loop, &s->phase_timer);
        ukko_logf(UKKO_LOG_DEBUG, "node", UKKO_FIELDS(UKKO_FS("phase", name), UKKO_FI("tasks", n)),
                  "stop phase %s: starting %zu task(s)", name, n);
        int phase = s->phase;
        /* Tasks may finish inside fn (done counts them down) or stop the
         * node outright (a second signal): look again after each. */
        for (size_t i = 0; i < s->ntasks && !s->over && s->phase_open && s->phase == phase; i++) {
            ukko_stop_task_t *t = &s->tasks[i];
            if ((int)t->phase != phase)
                continue;
            t->started = true;
            t->fn(t, t->ud);
        }
    }
}

static void on_step(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
    advance(w->data);
}

static void on_total_timeout(struct ev_loop *loop, ev_timer *w, int revents);

static void on_phase_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko__stop_t *s = w->data;
    if (!s->phase_open || s->over)
        return;
    /* The phase's deadline was the whole stop's (cluster.shutdown-timeout):
     * both timers are due at once, in an order libev does not promise. The
     * stop is over then, not merely this phase. */
    if (s->phase_deadline_ms >= s->deadline_ms) {
        on_total_timeout(loop, &s->total_timer, revents);
        return;
    }
    end_phase(s, true);
    advance(s);
}

void ukko__stop_describe(const ukko__stop_t *s, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!s->running || !s->phase_open)
        return;
    char names[400];
    unfinished(s, names, sizeof(names));
    snprintf(out, outlen, "phase %s, waiting on %s", phase_names[s->phase], names);
}

static void on_total_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko__stop_t *s = w->data;
    char d[32], where[480];
    ukko_format_duration(s->total_ms, d, sizeof(d));
    ukko__stop_describe(s, where, sizeof(where));
    ukko_logf(UKKO_LOG_WARN, "node",
              UKKO_FIELDS(UKKO_FS("phase", s->phase < UKKO_PHASE_COUNT ? phase_names[s->phase] : "")),
              "orderly stop did not finish within cluster.shutdown-timeout (%s)%s%s%s: exiting "
              "anyway",
              d, *where ? " (" : "", where, *where ? ")" : "");
    finish(s, 1);
}

void ukko__stop_init(ukko__stop_t *s, struct ev_loop *loop, ukko_node_t *node,
                     ukko__stop_finish_fn finish_fn, int64_t total_ms)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->node = node;
    s->finish = finish_fn;
    s->total_ms = total_ms;
    memcpy(s->phase_timeout_ms, default_timeout_ms, sizeof(s->phase_timeout_ms));
    ev_init(&s->total_timer, on_total_timeout);
    s->total_timer.data = s;
    ev_init(&s->phase_timer, on_phase_timeout);
    s->phase_timer.data = s;
    ev_idle_init(&s->step, on_step);
    s->step.data = s;
}

void ukko__stop_destroy(ukko__stop_t *s)
{
    ev_timer_stop(s->loop, &s->total_timer);
    ev_timer_stop(s->loop, &s->phase_timer);
    ev_idle_stop(s->loop, &s->step);
}

void ukko__stop_abort(ukko__stop_t *s)
{
    s->over = true;
    ukko__stop_destroy(s);
}

int ukko__stop_add(ukko__stop_t *s, ukko_phase_t phase, const char *name, ukko_stop_task_fn fn,
                   void *ud)
{
    if ((int)phase < 0 || phase >= UKKO_PHASE_COUNT || !fn) {
        ukko_log(UKKO_LOG_ERROR, "node", "stop task \"%s\": no such phase (%d)", name, (int)phase);
        return UKKO_EINVAL;
    }
    if (s->ntasks == UKKO__MAX_STOP_TASKS) {
        ukko_log(UKKO_LOG_ERROR, "node", "too many stop tasks (%d): \"%s\" not added",
                 UKKO__MAX_STOP_TASKS, name);
        return UKKO_E2BIG;
    }
    if (s->running && (int)phase <= s->phase) {
        ukko_log(UKKO_LOG_ERROR, "node",
                 "stop task \"%s\" added to phase %s, which the stop under way has passed: not "
                 "added",
                 name, phase_names[phase]);
        return UKKO_EINVAL;
    }
    ukko_stop_task_t *t = &s->tasks[s->ntasks++];
    memset(t, 0, sizeof(*t));
    t->owner = s;
    t->phase = phase;
    snprintf(t->name, sizeof(t->name), "%s", name ? name : "task");
    t->fn = fn;
    t->ud = ud;
    return 0;
}

void ukko_stop_task_done(ukko_stop_task_t *t)
{
    if (!t || !t->started || t->done)
        return;
    t->done = true;
    ukko__stop_t *s = t->owner;
    if (s->over || !s->phase_open || (int)t->phase != s->phase)
        return; /* its phase timed out (or was skipped) already */
    if (s->pending && --s->pending == 0)
        ev_idle_start(s->loop, &s->step);
}

ukko_node_t *ukko_stop_task_node(const ukko_stop_task_t *t)
{
    return t->owner->node;
}

int64_t ukko_stop_task_remaining_ms(const ukko_stop_task_t *t)
{
    const ukko__stop_t *s = t->owner;
    int64_t now = ukko_now_ms();
    int64_t end = s->running ? s->deadline_ms : now + s->total_ms;
    if (s->running && s->phase_open && (int)t->phase == s->phase && s->phase_deadline_ms < end)
        end = s->phase_deadline_ms;
    return end > now ? end - now : 0;
}

void ukko__stop_begin(ukko__stop_t *s, ukko_stop_reason_t reason, const char *why)
{
    if (s->running) {
        if (reason == UKKO_STOP_DOWNED && s->reason != UKKO_STOP_DOWNED && !s->over) {
            s->reason = UKKO_STOP_DOWNED;
            ukko_logf(UKKO_LOG_WARN, "node", UKKO_FIELDS(UKKO_FS("reason", "downed"), UKKO_FS("why", why)),
                      "downed while stopping (%s): the leave phases still to come are skipped",
                      why);
            ev_idle_start(s->loop, &s->step);
        }
        return;
    }
    s->running = true;
    s->reason = reason;
    s->t0_ms = ukko_now_ms();
    s->deadline_ms = s->t0_ms + s->total_ms;
    s->phase = 0;
    size_t n = s->ntasks;
    ukko_logf(UKKO_LOG_INFO, "node",
              UKKO_FIELDS(UKKO_FS("reason", ukko_stop_reason_name(reason)), UKKO_FS("why", why),
                          UKKO_FI("tasks", n)),
              "stopping (%s): no longer ready; running the stop phases (%zu task(s))", why, n);
    ev_timer_set(&s->total_timer, (double)s->total_ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->total_timer);
    ev_idle_start(s->loop, &s->step);
}
