/* emulator.c: the Kubernetes API emulator (tests/emulator/) as a child of
 * the test: started with its own state dir, ready when it prints its port,
 * driven through its ctl command. It exits when our end of its stdin
 * closes (--exit-with-stdin) and then removes its state dir
 * (--remove-on-exit), so even a killed test leaves nothing. Test process
 * only. */
#include "ukko_test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    return ut_now_ms();
}

int ut_emulator_start(ut_emulator_t *em, const char *pods_file, const char *const *extra)
{
    memset(em, 0, sizeof(*em));
    em->pid = -1;
    em->stdin_fd = -1;
    em->dir = ut_tempdir();
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
    int64_t deadline = now_ms() + 30000;
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
        char *log = ut_slurp(logpath, NULL);
        fprintf(stderr, "the emulator did not say it was ready within 30 s: %s\n%s\n",
                em->ready_line, log ? log : "");
        free(log);
        ut_emulator_stop(em);
        return -1;
    }
    return 0;
}

void ut_emulator_stop(ut_emulator_t *em)
{
    if (em->stdin_fd >= 0)
        close(em->stdin_fd);
    em->stdin_fd = -1;
    if (em->pid > 0) {
        kill(em->pid, SIGTERM);
        int64_t deadline = now_ms() + 5000;
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
        ut_rmtree(em->dir);
        free(em->dir);
        em->dir = NULL;
    }
}

int ut_emulator_ctl(ut_emulator_t *em, const char *const *args, char **out)
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
    if (ut_exec(argv, NULL, 30000, out, &err, &code) < 0)
        return -1;
    if (code != 0)
        fprintf(stderr, "emulator ctl %s: exit %d: %s\n", args[0], code, err ? err : "");
    free(err);
    return code;
}
