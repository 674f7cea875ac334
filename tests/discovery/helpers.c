/* helpers.c: fixtures, temp dirs, child processes and the Kubernetes API
 * emulator for the discovery tests. Test process only. Every child is
 * started with a deadline and reaped; the emulator also exits when our end
 * of its stdin closes (--exit-with-stdin) and then removes its state dir
 * (--remove-on-exit), so even a killed test leaves nothing. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *b2 = realloc(buf, cap * 2 + 1);
            if (!b2) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b2;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int th_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -errno;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

char *th_tempdir(const char *prefix)
{
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl), "/tmp/%s-XXXXXX", prefix);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void th_rmrf(const char *path)
{
    if (path && !strncmp(path, "/tmp/", 5))
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *th_shared_fixtures(void)
{
#define SHARED_FIXTURES UKKO_SOURCE_DIR "/../shared/k8s-fixtures"
    struct stat st;
    return stat(SHARED_FIXTURES "/pods.json", &st) == 0 ? SHARED_FIXTURES : NULL;
}

/* Reads what is there from fd into *buf (growing, capped); false at EOF. */
static bool drain(int fd, char **buf, size_t *len, size_t cap)
{
    char chunk[65536];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    if (*len + (size_t)n > cap)
        n = (ssize_t)(cap - *len);
    char *b = realloc(*buf, *len + (size_t)n + 1);
    if (!b)
        return false;
    memcpy(b + *len, chunk, (size_t)n);
    *len += (size_t)n;
    b[*len] = '\0';
    *buf = b;
    return true;
}

static void set_env(const char *const *env)
{
    for (const char *const *e = env; e && *e; e++) {
        char name[256];
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
        setenv(name, eq + 1, 1);
    }
}

int th_run(const char *const *argv, const char *const *env, int timeout_ms, char **out,
           char **err, int *exit_code)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        set_env(env);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    char *o = calloc(1, 1), *e = calloc(1, 1);
    size_t ol = 0, el = 0;
    bool open_o = true, open_e = true, killed = false;
    long long deadline = now_ms() + timeout_ms;
    while (open_o || open_e) {
        long long left = deadline - now_ms();
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
            deadline = now_ms() + 5000;
            continue;
        }
        if (left <= 0)
            break;
        struct pollfd fds[2] = {{open_o ? po[0] : -1, POLLIN, 0}, {open_e ? pe[0] : -1, POLLIN, 0}};
        if (poll(fds, 2, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
            break;
        if (open_o && (fds[0].revents & (POLLIN | POLLHUP)))
            open_o = drain(po[0], &o, &ol, 64u << 20);
        if (open_e && (fds[1].revents & (POLLIN | POLLHUP)))
            open_e = drain(pe[0], &e, &el, 1u << 20);
    }
    close(po[0]);
    close(pe[0]);
    int status = 0;
    if (!killed && waitpid(pid, &status, WNOHANG) == 0) {
        /* output closed but the child lingers: give it the rest of the time */
        while (waitpid(pid, &status, WNOHANG) == 0 && now_ms() < deadline)
            poll(NULL, 0, 10);
        if (waitpid(pid, &status, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            killed = true;
            waitpid(pid, &status, 0);
        }
    } else if (killed) {
        waitpid(pid, &status, 0);
    }
    *exit_code = killed ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return 0;
}

int th_emulator_start(th_emulator_t *em, const char *pods_file, const char *const *extra)
{
    memset(em, 0, sizeof(*em));
    em->pid = -1;
    em->stdin_fd = -1;
    em->dir = th_tempdir("ukko-disc-em");
    if (!em->dir)
        return -1;
    const char *argv[40];
    size_t n = 0;
    argv[n++] = "python3";
    argv[n++] = UKKO_SOURCE_DIR "/tests/emulator/kube_api_emulator.py";
    argv[n++] = "--state-dir";
    argv[n++] = em->dir;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--quiet";
    argv[n++] = "--exit-with-stdin";
    argv[n++] = "--remove-on-exit"; /* even when this test is killed */
    argv[n++] = em->dir;
    if (pods_file) {
        argv[n++] = "--pods";
        argv[n++] = pods_file;
    }
    for (const char *const *x = extra; x && *x && n < 38; x++)
        argv[n++] = *x;
    argv[n] = NULL;

    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pout, O_CLOEXEC) < 0)
        return -1;
    char logpath[512];
    snprintf(logpath, sizeof(logpath), "%s/emulator.log", em->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        int lf = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lf >= 0)
            dup2(lf, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    em->pid = pid;
    em->stdin_fd = pin[1];
    size_t len = 0;
    long long deadline = now_ms() + 30000;
    while (now_ms() < deadline) {
        struct pollfd pfd = {pout[0], POLLIN, 0};
        if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
            break;
        if (pfd.revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(pout[0], em->ready_line + len, sizeof(em->ready_line) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            em->ready_line[len] = '\0';
            char *nl = strchr(em->ready_line, '\n');
            if (nl) {
                *nl = '\0';
                const char *at = strstr(em->ready_line, "\"port\":");
                em->port = at ? atoi(at + 7) : 0;
                break;
            }
        }
    }
    close(pout[0]);
    if (em->port <= 0) {
        char *log = th_read_file(logpath, NULL);
        fprintf(stderr, "the emulator did not say it was ready within 30 s: %s\n%s\n",
                em->ready_line, log ? log : "");
        free(log);
        th_emulator_stop(em);
        return -1;
    }
    return 0;
}

void th_emulator_stop(th_emulator_t *em)
{
    if (em->stdin_fd >= 0)
        close(em->stdin_fd);
    em->stdin_fd = -1;
    if (em->pid > 0) {
        kill(em->pid, SIGTERM);
        long long deadline = now_ms() + 5000;
        int status;
        while (waitpid(em->pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(em->pid, SIGKILL);
                waitpid(em->pid, &status, 0);
                break;
            }
            poll(NULL, 0, 20);
        }
        em->pid = -1;
    }
    if (em->dir) {
        th_rmrf(em->dir);
        free(em->dir);
        em->dir = NULL;
    }
}

int th_emulator_ctl(th_emulator_t *em, const char *const *args, char **out)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = "python3";
    argv[n++] = UKKO_SOURCE_DIR "/tests/emulator/kube_api_emulator.py";
    argv[n++] = "ctl";
    argv[n++] = "--state-dir";
    argv[n++] = em->dir;
    for (const char *const *a = args; *a && n < 15; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    int code = -1;
    char *err = NULL;
    if (th_run(argv, NULL, 30000, out, &err, &code) < 0)
        return -1;
    if (code != 0)
        fprintf(stderr, "emulator ctl %s: exit %d: %s\n", args[0], code, err ? err : "");
    free(err);
    return code;
}
