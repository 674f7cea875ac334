/* helpers.h: what the discovery tests share: reading fixtures, temp dirs,
 * and running the Kubernetes API emulator as a child process. Test process
 * only (Criterion runs each test in its own worker). */
#ifndef UKKO_TESTS_DISCOVERY_HELPERS_H
#define UKKO_TESTS_DISCOVERY_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The file whole (NUL-terminated, *len without it), or NULL. Caller frees. */
char *th_read_file(const char *path, size_t *len);
/* Writes text to path (0 or -errno). */
int th_write_file(const char *path, const char *text);
/* mkdtemp under /tmp; caller removes with th_rmrf. */
char *th_tempdir(const char *prefix);
void th_rmrf(const char *path);
/* The shared recorded fixtures, or NULL when the folder is absent. */
const char *th_shared_fixtures(void);

/* A running emulator: port, state dir (its CA is dir/ca.crt, a valid token
 * dir/token, ...: see tests/emulator/README.md). */
typedef struct th_emulator {
    pid_t pid;
    int stdin_fd; /* closing it makes the emulator exit */
    int port;
    char *dir;
    char ready_line[4096];
} th_emulator_t;

/* Starts the emulator serving pods_file (NULL: none) with extra args
 * (NULL-terminated, may be NULL); waits for its ready line (deadline 30 s).
 * Returns 0 or -1 (with the reason on stderr). */
int th_emulator_start(th_emulator_t *em, const char *pods_file, const char *const *extra);
/* Kills it (SIGTERM, then SIGKILL after a deadline), removes its dir. */
void th_emulator_stop(th_emulator_t *em);
/* Runs `kube_api_emulator.py ctl --state-dir DIR args...` (NULL-terminated):
 * "fault", "{...}" / "rotate-token" / "clear-faults" / "requests"; its
 * stdout into *out when out is not NULL. Returns its exit code (0 ok). */
int th_emulator_ctl(th_emulator_t *em, const char *const *args, char **out);

/* Runs argv with env additions (NULL-terminated "K=V", may be NULL),
 * capturing stdout and stderr (each up to cap bytes) and the exit code;
 * kills it after timeout_ms. Returns 0 or -1. */
int th_run(const char *const *argv, const char *const *env, int timeout_ms, char **out,
           char **err, int *exit_code);

#endif
