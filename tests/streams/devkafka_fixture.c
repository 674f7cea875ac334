/* devkafka_fixture.c: a `ukko dev-kafka` child with pipes (see the header). */
#include "devkafka_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef UKKO_BIN
#error "UKKO_BIN must name the ukko program (tests/CMakeLists.txt sets it)"
#endif

int dk_read_line(dk_proc_t *dk, ukko_buf_t *line, int timeout_ms)
{
    int64_t deadline = ukko_now_ms() + timeout_ms;
    for (;;) {
        char *nl = dk->pending.len ? memchr(dk->pending.data, '\n', dk->pending.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - dk->pending.data);
            ukko_buf_reset(line);
            ukko_buf_append(line, dk->pending.data, n);
            ukko_buf_consume(&dk->pending, n + 1);
            return 0;
        }
        int left = (int)(deadline - ukko_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = dk->out_fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        char chunk[4096];
        ssize_t n = read(dk->out_fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        if (ukko_buf_append(&dk->pending, chunk, (size_t)n) < 0)
            return -1;
    }
}

int dk_start(dk_proc_t *dk, const char *const args[], int timeout_ms, ukko_buf_t *why)
{
    memset(dk, 0, sizeof(*dk));
    dk->started = true;
    dk->pid = -1;
    dk->in_fd = dk->out_fd = -1;
    ukko_buf_init(&dk->pending, 1 << 20);
    dk->dir = ut_tempdir();
    if (!dk->dir)
        return -1;
    snprintf(dk->log_path, sizeof(dk->log_path), "%s/dev-kafka.log", dk->dir);
    const char *argv[40] = {UKKO_BIN, "dev-kafka"};
    size_t n = 2;
    for (size_t i = 0; args && args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the test, even a killed one */
        if (getppid() != parent)
            _exit(127);
        int logfd = open(dk->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || logfd < 0 || dup2(logfd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    dk->pid = pid;
    dk->in_fd = in[1];
    dk->out_fd = out[0];
    ukko_buf_t line;
    ukko_buf_init(&line, 0);
    int rc = dk_read_line(dk, &line, timeout_ms);
    if (rc == 0 && line.len < sizeof(dk->bootstrap) && strncmp(line.data, "127.0.0.1:", 10) == 0)
        memcpy(dk->bootstrap, line.data, line.len + 1);
    else
        rc = -1;
    if (rc < 0 && why) {
        ukko_buf_printf(why, "dev-kafka printed no bootstrap line within %d ms (first line: "
                             "\"%s\"); its log:\n",
                        timeout_ms, line.data ? line.data : "");
        ut_read_file(dk->log_path, why);
    }
    ukko_buf_destroy(&line);
    if (rc < 0)
        dk_stop(dk, SIGKILL, 5000);
    return rc;
}

int dk_command(dk_proc_t *dk, const char *line, ukko_buf_t *reply, int timeout_ms)
{
    if (dk->in_fd < 0)
        return -1;
    char buf[2048];
    int n = snprintf(buf, sizeof(buf), "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    /* SIGPIPE (a dead broker) would kill the test: write without it. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    ssize_t w = write(dk->in_fd, buf, (size_t)n);
    sigaction(SIGPIPE, &old, NULL);
    if (w != n)
        return -1;
    return dk_read_line(dk, reply, timeout_ms);
}

void dk_close_stdin(dk_proc_t *dk)
{
    if (dk->in_fd >= 0)
        close(dk->in_fd);
    dk->in_fd = -1;
}

int dk_stop(dk_proc_t *dk, int sig, int timeout_ms)
{
    int rc = -1;
    if (!dk->started)
        return -1;
    dk->started = false;
    if (dk->pid > 0)
        rc = ut_stop(dk->pid, sig, timeout_ms);
    dk->pid = -1;
    dk_close_stdin(dk);
    if (dk->out_fd >= 0)
        close(dk->out_fd);
    dk->out_fd = -1;
    ukko_buf_destroy(&dk->pending);
    if (dk->dir) {
        ut_rmtree(dk->dir);
        free(dk->dir);
        dk->dir = NULL;
    }
    return rc;
}
