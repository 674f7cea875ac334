/* ukko_test.c: processes, raw HTTP, files and polling for the tests (see the
 * header); the emulator's helpers are in emulator.c, the cluster's in
 * cluster.c. Test process only. */
#include "ukko_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

pid_t ut_spawn(const char *const argv[], const char *const env[], const char *log_path)
{
    /* Build the child's environment before forking: the parent's without UKKO_*. */
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (env && env[m])
        m++;
    char **envp = calloc(n + m + 1, sizeof(char *));
    if (!envp)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "UKKO_", 5))
            envp[k++] = environ[i];
    for (size_t i = 0; i < m; i++)
        envp[k++] = (char *)env[i];
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Die with the test, even when it is killed (a ctest timeout). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (log_path) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    return pid;
}

static int64_t now_ms(void)
{
    return ukko_now_ms();
}

int64_t ut_now_ms(void)
{
    return ukko_now_ms();
}

bool ut_wait_for(bool (*cond)(void *ud), void *ud, int timeout_ms, int interval_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (cond(ud))
            return true;
        if (now_ms() >= deadline)
            return false;
        usleep((useconds_t)(interval_ms > 0 ? interval_ms : 10) * 1000);
    }
}

int ut_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(5000);
    }
}

int ut_stop(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    return ut_wait_exit(pid, timeout_ms);
}

int ut_connect(const char *host, int port, int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ut_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ut_read_response(int fd, ukko_buf_t *out, int timeout_ms)
{
    /* Peek until one whole response is there, then consume exactly it, so
     * pipelined responses stay in the socket for the next call. */
    enum { CAP = 4 * 1024 * 1024 };
    char *buf = malloc(CAP + 1);
    if (!buf)
        return -1;
    int64_t deadline = now_ms() + timeout_ms;
    int status = -1;
    ssize_t last = -1;
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            break;
        ssize_t n = recv(fd, buf, CAP, MSG_PEEK);
        if (n == 0) {
            status = 0; /* closed before a whole response */
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            break;
        }
        buf[n] = '\0';
        char *he = strstr(buf, "\r\n\r\n");
        if (he) {
            size_t hlen = (size_t)(he + 4 - buf);
            *he = '\0';
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t blen = cl ? strtoul(cl + 17, NULL, 10) : 0;
            *he = '\r';
            if ((size_t)n >= hlen + blen) {
                status = atoi(buf + 9);
                if (out) {
                    ukko_buf_reset(out);
                    ukko_buf_append(out, buf + hlen, blen);
                }
                (void)!recv(fd, buf, hlen + blen, 0);
                break;
            }
        }
        if (n == last)
            usleep(1000); /* nothing new yet: poll() says readable for peeked data */
        last = n;
    }
    free(buf);
    return status;
}

bool ut_closed_by_peer(int fd, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            return false;
        char c[4096];
        ssize_t n = recv(fd, c, sizeof(c), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
    }
}

int ut_http(const char *host, int port, const char *method, const char *path, ukko_buf_t *body,
            int timeout_ms)
{
    int fd = ut_connect(host, port, timeout_ms);
    if (fd < 0)
        return -1;
    char req[2048];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     method, path, host);
    int status = -1;
    if (ut_send_all(fd, req, (size_t)n) == 0) {
        if (strcmp(method, "HEAD")) {
            status = ut_read_response(fd, body, timeout_ms);
        } else {
            /* No body follows a HEAD response, whatever Content-Length says. */
            ukko_buf_t head;
            ukko_buf_init(&head, 65536);
            char c;
            while ((!head.data || !strstr(head.data, "\r\n\r\n")) && recv(fd, &c, 1, 0) == 1)
                ukko_buf_append(&head, &c, 1);
            if (head.data && strstr(head.data, "\r\n\r\n"))
                status = atoi(head.data + 9);
            ukko_buf_destroy(&head);
        }
    }
    close(fd);
    return status;
}

bool ut_wait_status(const char *host, int port, const char *path, int want_status,
                    int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    do {
        if (ut_http(host, port, "GET", path, NULL, 1000) == want_status)
            return true;
        usleep(10000);
    } while (now_ms() < deadline);
    return false;
}

int ut_run(const char *cmd, const char *input, ukko_buf_t *out)
{
    char inpath[] = "/tmp/ukko-test-in-XXXXXX", outpath[] = "/tmp/ukko-test-out-XXXXXX";
    int infd = mkstemp(inpath), outfd = mkstemp(outpath);
    if (infd < 0 || outfd < 0)
        return -1;
    if (input)
        (void)!write(infd, input, strlen(input));
    close(infd);
    close(outfd);
    char full[4096];
    snprintf(full, sizeof(full), "(%s) < %s > %s 2>&1", cmd, inpath, outpath);
    int st = system(full);
    if (out)
        ut_read_file(outpath, out);
    unlink(inpath);
    unlink(outpath);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int ut_read_file(const char *path, ukko_buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ukko_buf_append(out, chunk, n);
    fclose(f);
    return 0;
}

char *ut_tempdir(void)
{
    char *d = strdup("/tmp/ukko-test-XXXXXX");
    if (d && !mkdtemp(d)) {
        free(d);
        return NULL;
    }
    return d;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ut_rmtree(const char *dir)
{
    if (dir && !strncmp(dir, "/tmp/", 5))
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *ut_slurp(const char *path, size_t *len)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 0);
    if (ut_read_file(path, &b) < 0) {
        ukko_buf_destroy(&b);
        return NULL;
    }
    if (!b.data && ukko_buf_append(&b, "", 0) < 0)
        return NULL;
    if (len)
        *len = b.len;
    return b.data ? b.data : strdup(""); /* the caller frees */
}

int ut_write_file(const char *path, const char *text)
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

const char *ut_shared_fixtures(void)
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

int ut_exec(const char *const *argv, const char *const *env, int timeout_ms, char **out,
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
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
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
    int64_t deadline = now_ms() + timeout_ms;
    while (open_o || open_e) {
        int64_t left = deadline - now_ms();
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
