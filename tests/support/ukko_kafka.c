/* ukko_kafka.c: the C face of tests/kafka/broker.sh (see ukko_kafka.h). Each
 * call runs the script with the rig's state folder and waits for it; the
 * script owns every process and file of the rig, this side only its folder's
 * name. Single-threaded. */
#include "ukko_kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UKKO_KAFKA_BROKER_SH
#error "build with -DUKKO_KAFKA_BROKER_SH=\"/path/to/tests/kafka/broker.sh\""
#endif

#define MAX_ARGS 64
#define ERR_CAP (64 * 1024)

static const char *script(void)
{
    const char *s = getenv("UKKO_KAFKA_BROKER_SH");
    return s && *s ? s : UKKO_KAFKA_BROKER_SH;
}

/* Keeps the end of what broker.sh said: its last lines name the failure. */
static void set_why(ukko_kafka_rig_t *rig, const char *what, const char *err, size_t len)
{
    while (len && (err[len - 1] == '\n' || err[len - 1] == ' '))
        len--;
    size_t room = sizeof(rig->why) - strlen(what) - 8;
    const char *tail = err;
    if (len > room) {
        tail = err + len - room;
        len = room;
    }
    snprintf(rig->why, sizeof(rig->why), "%s%s%.*s", what, len ? ": " : "", (int)len, tail);
}

/* Runs broker.sh --state <state> <argv...> with input on stdin. Up to
 * out_size-1 bytes of stdout go to out; all of stderr (capped) to *err, which
 * the caller frees. Returns the exit code, or -1 if it could not run. */
static int run_script(const ukko_kafka_rig_t *rig, const char *const argv[], const char *input,
                      char *out, size_t out_size, char **err, size_t *err_len)
{
    const char *full[MAX_ARGS + 4];
    size_t n = 0;
    full[n++] = script();
    full[n++] = "--state";
    full[n++] = rig->state;
    for (size_t i = 0; argv[i] && n < MAX_ARGS + 3; i++)
        full[n++] = argv[i];
    full[n] = NULL;

    *err = calloc(1, ERR_CAP + 1);
    *err_len = 0;
    if (out && out_size)
        out[0] = '\0';
    if (!*err)
        return -1;
    int in_p[2], out_p[2], err_p[2];
    if (pipe2(in_p, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out_p, O_CLOEXEC) < 0) {
        close(in_p[0]), close(in_p[1]);
        return -1;
    }
    if (pipe2(err_p, O_CLOEXEC) < 0) {
        close(in_p[0]), close(in_p[1]), close(out_p[0]), close(out_p[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in_p[0], 0);
        dup2(out_p[1], 1);
        dup2(err_p[1], 2);
        execv(full[0], (char *const *)full);
        dprintf(2, "cannot run %s: %s\n", full[0], strerror(errno));
        _exit(127);
    }
    close(in_p[0]), close(out_p[1]), close(err_p[1]);
    if (pid < 0) {
        close(in_p[1]), close(out_p[0]), close(err_p[0]);
        return -1;
    }

    /* The script may exit without reading its input: no SIGPIPE for us. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    size_t in_len = input ? strlen(input) : 0, in_off = 0, out_len = 0;
    int fds[3] = {in_p[1], out_p[0], err_p[0]};
    if (in_len == 0) {
        close(fds[0]);
        fds[0] = -1;
    }
    while (fds[1] >= 0 || fds[2] >= 0) {
        struct pollfd p[3];
        for (int i = 0; i < 3; i++)
            p[i] = (struct pollfd){.fd = fds[i], .events = i == 0 ? POLLOUT : POLLIN};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0] >= 0 && p[0].revents) {
            ssize_t w = write(fds[0], input + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if (w < 0 || in_off == in_len) {
                close(fds[0]);
                fds[0] = -1;
            }
        }
        for (int i = 1; i < 3; i++) {
            if (fds[i] < 0 || !p[i].revents)
                continue;
            char buf[4096];
            ssize_t r = read(fds[i], buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            if (i == 1 && out && out_len + 1 < out_size) {
                size_t k = (size_t)r < out_size - 1 - out_len ? (size_t)r : out_size - 1 - out_len;
                memcpy(out + out_len, buf, k);
                out_len += k;
                out[out_len] = '\0';
            } else if (i == 2) {
                /* Past the cap, keep the newest bytes: the failure is at the end. */
                if (*err_len + (size_t)r > ERR_CAP) {
                    size_t drop = *err_len + (size_t)r - ERR_CAP;
                    if (drop > *err_len)
                        drop = *err_len;
                    memmove(*err, *err + drop, *err_len - drop);
                    *err_len -= drop;
                }
                size_t k = (size_t)r < ERR_CAP - *err_len ? (size_t)r : ERR_CAP - *err_len;
                memcpy(*err + *err_len, buf, k);
                *err_len += k;
                (*err)[*err_len] = '\0';
            }
        }
    }
    if (fds[0] >= 0)
        close(fds[0]);
    sigaction(SIGPIPE, &old, NULL);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs a command whose failure is the rig's: 0, UKKO_KAFKA_RIG_SKIP, or -1. */
static int run_cmd(ukko_kafka_rig_t *rig, const char *what, const char *const argv[],
                   const char *input, char *out, size_t out_size)
{
    char *err = NULL;
    size_t err_len = 0;
    int code = run_script(rig, argv, input, out, out_size, &err, &err_len);
    int rc = 0;
    if (code == 3) {
        /* broker.sh's "no real Kafka: <reason>" line. */
        const char *r = err ? strstr(err, "no real Kafka: ") : NULL;
        r = r ? r + strlen("no real Kafka: ") : "broker.sh exited 3";
        size_t len = strcspn(r, "\n");
        snprintf(rig->why, sizeof(rig->why), "SKIPPED: no real Kafka (%.*s)", (int)len, r);
        rc = UKKO_KAFKA_RIG_SKIP;
    } else if (code != 0) {
        char head[256];
        snprintf(head, sizeof(head), "tests/kafka/broker.sh %s failed (exit %d)", what, code);
        set_why(rig, head, err ? err : "", err_len);
        rc = -1;
    }
    free(err);
    return rc;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

int ukko_kafka_rig_start(ukko_kafka_rig_t *rig, const ukko_kafka_rig_opts_t *opts)
{
    ukko_kafka_rig_opts_t none = {0};
    if (!opts)
        opts = &none;
    memset(rig, 0, sizeof(*rig));
    rig->brokers = opts->brokers > 0 ? opts->brokers : 1;

    const char *tmp = getenv("TMPDIR");
    snprintf(rig->state, sizeof(rig->state), "%s/ukko-kafka-rig-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(rig->state)) {
        snprintf(rig->why, sizeof(rig->why), "mkdtemp %s: %s", rig->state, strerror(errno));
        rig->state[0] = '\0';
        return -1;
    }
    rig->owner = true;

    char brokers[16], owner[32], timeout[16];
    snprintf(brokers, sizeof(brokers), "%d", rig->brokers);
    snprintf(owner, sizeof(owner), "%ld", (long)getpid());
    snprintf(timeout, sizeof(timeout), "%d", opts->timeout_s);
    const char *argv[MAX_ARGS + 1];
    size_t n = 0;
    argv[n++] = "--brokers";
    argv[n++] = brokers;
    argv[n++] = "--owner";
    argv[n++] = owner;
    if (opts->host) {
        argv[n++] = "--host";
        argv[n++] = opts->host;
    }
    if (opts->timeout_s > 0) {
        argv[n++] = "--timeout";
        argv[n++] = timeout;
    }
    for (size_t i = 0; opts->props && opts->props[i] && n + 3 < MAX_ARGS; i++) {
        argv[n++] = "--prop";
        argv[n++] = opts->props[i];
    }
    argv[n++] = "start";
    argv[n] = NULL;
    int rc = run_cmd(rig, "start", argv, NULL, rig->bootstrap, sizeof(rig->bootstrap));
    trim(rig->bootstrap);
    if (rc == 0 && !rig->bootstrap[0]) {
        snprintf(rig->why, sizeof(rig->why), "tests/kafka/broker.sh start printed no bootstrap servers");
        rc = -1;
    }
    /* A skipped rig has nothing in its folder; a failed one keeps its logs
     * (named in why) until the caller's _stop. */
    if (rc == UKKO_KAFKA_RIG_SKIP)
        ukko_kafka_rig_stop(rig);
    return rc;
}

void ukko_kafka_rig_stop(ukko_kafka_rig_t *rig)
{
    if (!rig->owner || !rig->state[0])
        return;
    const char *argv[] = {"stop", NULL};
    char *err = NULL;
    size_t err_len = 0;
    int code = run_script(rig, argv, NULL, NULL, 0, &err, &err_len);
    if (code != 0)
        fprintf(stderr, "ukko_kafka: stopping the rig in %s failed (exit %d): %s\n", rig->state,
                code, err ? err : "");
    free(err);
    rig->owner = false;
}

int ukko_kafka_rig_share(ukko_kafka_rig_t *rig, const ukko_kafka_rig_opts_t *opts)
{
    int rc = ukko_kafka_rig_start(rig, opts);
    char num[16];
    snprintf(num, sizeof(num), "%d", rc);
    setenv("UKKO_KAFKA_RIG_RC", num, 1);
    snprintf(num, sizeof(num), "%d", rig->brokers);
    setenv("UKKO_KAFKA_RIG_BROKERS", num, 1);
    setenv("UKKO_KAFKA_RIG_STATE", rig->state, 1);
    setenv("UKKO_KAFKA_RIG_BOOTSTRAP", rig->bootstrap, 1);
    setenv("UKKO_KAFKA_RIG_WHY", rig->why, 1);
    if (rc == UKKO_KAFKA_RIG_SKIP)
        printf("%s\n", rig->why);
    else if (rc != 0)
        fprintf(stderr, "ukko_kafka: no broker for this file's tests: %s\n", rig->why);
    else
        fprintf(stderr, "ukko_kafka: Kafka at %s (state %s)\n", rig->bootstrap, rig->state);
    fflush(stdout);
    return rc;
}

int ukko_kafka_rig_attach(ukko_kafka_rig_t *rig)
{
    memset(rig, 0, sizeof(*rig));
    const char *rc = getenv("UKKO_KAFKA_RIG_RC");
    if (!rc) {
        snprintf(rig->why, sizeof(rig->why),
                 "no shared Kafka rig: call ukko_kafka_rig_share() in a ReportHook(PRE_ALL)");
        return -1;
    }
    const char *v;
    if ((v = getenv("UKKO_KAFKA_RIG_STATE")))
        snprintf(rig->state, sizeof(rig->state), "%s", v);
    if ((v = getenv("UKKO_KAFKA_RIG_BOOTSTRAP")))
        snprintf(rig->bootstrap, sizeof(rig->bootstrap), "%s", v);
    if ((v = getenv("UKKO_KAFKA_RIG_WHY")))
        snprintf(rig->why, sizeof(rig->why), "%s", v);
    if ((v = getenv("UKKO_KAFKA_RIG_BROKERS")))
        rig->brokers = atoi(v);
    return atoi(rc);
}

int ukko_kafka_rig_topic(ukko_kafka_rig_t *rig, const char *name, int partitions, int replication)
{
    char p[16], r[16];
    snprintf(p, sizeof(p), "%d", partitions);
    snprintf(r, sizeof(r), "%d", replication > 0 ? replication : rig->brokers);
    const char *argv[] = {"topic", name, p, r, NULL};
    return run_cmd(rig, "topic", argv, NULL, NULL, 0) == 0 ? 0 : -1;
}

int ukko_kafka_rig_produce_java(ukko_kafka_rig_t *rig, const char *topic, const char *lines)
{
    const char *argv[] = {"produce", topic, NULL};
    return run_cmd(rig, "produce", argv, lines, NULL, 0) == 0 ? 0 : -1;
}

int ukko_kafka_rig_java(ukko_kafka_rig_t *rig, const char *main_class, const char *const args[],
                        char *out, size_t out_size)
{
    const char *argv[MAX_ARGS + 1];
    size_t n = 0;
    argv[n++] = "java";
    argv[n++] = main_class;
    for (size_t i = 0; args && args[i] && n < MAX_ARGS; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *err = NULL;
    size_t err_len = 0;
    int code = run_script(rig, argv, NULL, out, out_size, &err, &err_len);
    if (code != 0)
        set_why(rig, main_class, err ? err : "", err_len);
    free(err);
    return code;
}

static int node_cmd(ukko_kafka_rig_t *rig, const char *cmd, int node)
{
    char n[16];
    snprintf(n, sizeof(n), "%d", node);
    const char *argv[] = {cmd, n, NULL};
    return run_cmd(rig, cmd, argv, NULL, NULL, 0) == 0 ? 0 : -1;
}

int ukko_kafka_rig_pause(ukko_kafka_rig_t *rig, int node)
{
    return node_cmd(rig, "pause", node);
}

int ukko_kafka_rig_resume(ukko_kafka_rig_t *rig, int node)
{
    return node_cmd(rig, "resume", node);
}

int ukko_kafka_rig_kill(ukko_kafka_rig_t *rig, int node)
{
    return node_cmd(rig, "kill", node);
}

int ukko_kafka_rig_term(ukko_kafka_rig_t *rig, int node)
{
    return node_cmd(rig, "term", node);
}

int ukko_kafka_rig_restart(ukko_kafka_rig_t *rig, int node)
{
    return node_cmd(rig, "restart", node);
}

int ukko_kafka_rig_leader(ukko_kafka_rig_t *rig, const char *topic, int partition)
{
    char p[16], out[64];
    snprintf(p, sizeof(p), "%d", partition);
    const char *argv[] = {"leader", topic, p, NULL};
    if (run_cmd(rig, "leader", argv, NULL, out, sizeof(out)) != 0)
        return -1;
    char *end;
    long id = strtol(out, &end, 10);
    if (end == out) {
        snprintf(rig->why, sizeof(rig->why), "broker.sh leader printed '%s'", out);
        return -1;
    }
    return (int)id;
}

pid_t ukko_kafka_rig_pid(const ukko_kafka_rig_t *rig, int node)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/node-%d/pid", rig->state, node);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    fclose(f);
    return (pid_t)pid;
}
