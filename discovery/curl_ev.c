/* curl_ev.c: libcurl's multi-socket interface on a libev loop. curl says
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake
 * (CURLMOPT_TIMERFUNCTION); libev watches, and hands the events back with
 * curl_multi_socket_action. Loop thread only; the multi handle belongs to it.
 * Invariant: a watcher is stopped before curl closes its socket (curl says
 * CURL_POLL_REMOVE first), and curl is never re-entered from its callbacks. */
#include "discovery_internal.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct sock {
    ev_io io;
    curl_socket_t fd;
    discovery__http_t *h;
    struct sock *prev, *next; /* every watcher, so none outlives the multi */
} sock_t;

typedef struct xfer {
    discovery__http_done_fn done;
    void *ud;
} xfer_t;

struct discovery__http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    int running;
    sock_t *socks;
};

static void sock_drop(discovery__http_t *h, sock_t *s)
{
    ev_io_stop(h->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    /* libcurl >= 7.84 makes this thread-safe; once is enough either way. */
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Hands finished transfers back. done may add a new transfer (a retry), or
 * remove others: each message is read afresh after it returns. */
static void check_done(discovery__http_t *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        if (x) {
            discovery__http_done_fn done = x->done;
            void *ud = x->ud;
            free(x);
            done(easy, result, ud);
        }
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    discovery__http_t *h = w->data;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->running);
    check_done(h);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sock_t *s = w->data;
    discovery__http_t *h = s->h;
    int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    /* s may be freed inside this call (CURL_POLL_REMOVE): not used after. */
    curl_multi_socket_action(h->multi, s->fd, action, &h->running);
    /* The timer is left to curl (on_timer_change): a done callback may have
     * started a new transfer (the retry after a 401) that armed it. */
    check_done(h);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    discovery__http_t *h = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_drop(h, s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "out of memory watching a socket");
            return -1;
        }
        s->fd = fd;
        s->h = h;
        ev_init(&s->io, on_io);
        s->io.data = s;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_stop(h->loop, &s->io);
    ev_io_set(&s->io, fd, events);
    ev_io_start(h->loop, &s->io);
    return 0;
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    discovery__http_t *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* 0 means "now": still from the loop, never by re-entering curl. */
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

discovery__http_t *discovery__http_new(struct ev_loop *loop)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "libcurl did not initialise: %s",
                 curl_easy_strerror(global_rc));
        return NULL;
    }
    discovery__http_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return NULL;
    }
    ev_init(&h->timer, on_timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

int discovery__http_add(discovery__http_t *h, CURL *easy, discovery__http_done_fn done, void *ud)
{
    xfer_t *x = malloc(sizeof(*x));
    if (!x)
        return UKKO_ENOMEM;
    x->done = done;
    x->ud = ud;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    CURLMcode mc = curl_multi_add_handle(h->multi, easy);
    if (mc != CURLM_OK) {
        ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "libcurl refused a transfer: %s",
                 curl_multi_strerror(mc));
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return UKKO_EINVAL;
    }
    return 0;
}

void discovery__http_remove(discovery__http_t *h, CURL *easy)
{
    xfer_t *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(x);
}

void discovery__http_free(discovery__http_t *h)
{
    if (!h)
        return;
    /* Handles still attached belong to their owners, who remove them first;
     * cleanup then tells on_socket to drop any watcher left. */
    ev_timer_stop(h->loop, &h->timer);
    curl_multi_cleanup(h->multi);
    ev_timer_stop(h->loop, &h->timer);
    while (h->socks)
        sock_drop(h, h->socks);
    free(h);
}
