/* ukko_test.h: the one test-support library (ukko_test_support) of every
 * folder's tests: real `ukko` processes (spawn with an environment, orderly
 * stops), other programs, raw HTTP over TCP, files and temp dirs, polling
 * with deadlines (never sleep-then-assert), the Kubernetes API emulator,
 * and clusters of real nodes. Single-threaded; test process only. */
#ifndef UKKO_TEST_H
#define UKKO_TEST_H

#include "ukko.h"

#include <stdbool.h>
#include <sys/types.h>

/* Starts argv[0] with the parent's environment minus every UKKO_* variable,
 * plus env (NULL-terminated "K=V"), stdout and stderr appended to log_path
 * (NULL: inherited). The child is killed when the test process dies.
 * Returns the pid or -1. */
pid_t ut_spawn(const char *const argv[], const char *const env[], const char *log_path);
/* Sends sig and waits up to timeout_ms for the exit. Returns the exit code,
 * 128+signal if killed by one, or -1 if it did not exit (then it is killed). */
int ut_stop(pid_t pid, int sig, int timeout_ms);
/* Waits for an exit already underway; same results as ut_stop. */
int ut_wait_exit(pid_t pid, int timeout_ms);

/* A TCP connection to host:port (blocking, with a receive timeout), or -1. */
int ut_connect(const char *host, int port, int timeout_ms);
int ut_send_all(int fd, const void *buf, size_t len);
/* Reads one HTTP response (headers + Content-Length body) from fd into out.
 * Returns the status, 0 when the peer closed first, -1 on timeout/error. */
int ut_read_response(int fd, ukko_buf_t *out, int timeout_ms);
/* True when the peer has closed fd (read returns 0) within timeout_ms. */
bool ut_closed_by_peer(int fd, int timeout_ms);
/* One request on a new connection: the status (or -1); body (may be NULL)
 * receives the response body. */
int ut_http(const char *host, int port, const char *method, const char *path,
            ukko_buf_t *body, int timeout_ms);
/* Polls GET path until it answers want_status or timeout_ms passes. */
bool ut_wait_status(const char *host, int port, const char *path, int want_status,
                    int timeout_ms);
/* Runs a shell command with input on stdin; returns its exit code and, if
 * out is given, what it wrote to stdout and stderr. */
int ut_run(const char *cmd, const char *input, ukko_buf_t *out);
/* Runs argv (PATH searched) with env additions (NULL-terminated "K=V", may
 * be NULL), capturing stdout and stderr (each capped; *out and *err are the
 * caller's to free, when given) and the exit code (-1 when it had to be
 * killed after timeout_ms). Returns 0, or -1 when it could not run. */
int ut_exec(const char *const *argv, const char *const *env, int timeout_ms, char **out,
            char **err, int *exit_code);

/* ---- files */

/* Reads a whole file into out; 0 or -1. */
int ut_read_file(const char *path, ukko_buf_t *out);
/* The file whole, NUL-terminated (*len without it, when given), or NULL.
 * The caller frees it. */
char *ut_slurp(const char *path, size_t *len);
/* Writes text to path: 0 or -errno. */
int ut_write_file(const char *path, const char *text);
/* A new private temp dir under /tmp (mkdtemp; the caller frees the string)
 * and its recursive removal (only under /tmp). */
char *ut_tempdir(void);
void ut_rmtree(const char *dir);
/* The recorded Kubernetes API responses (../shared/k8s-fixtures), or NULL
 * when that folder is absent (the test then prints SKIPPED). */
const char *ut_shared_fixtures(void);

/* ---- polling: conditions with a deadline (Redis' wait_for_condition) */

/* Milliseconds of the monotonic clock. */
int64_t ut_now_ms(void);
/* Calls cond(ud) every interval_ms until it is true (returns true) or
 * timeout_ms has passed (returns false, after one last look). */
bool ut_wait_for(bool (*cond)(void *ud), void *ud, int timeout_ms, int interval_ms);

/* ---- the Kubernetes API emulator (tests/emulator/) */

/* A running emulator: port, state dir (its CA is dir/ca.crt, a valid token
 * dir/token, ...: see tests/emulator/README.md). */
typedef struct ut_emulator {
    pid_t pid;
    int stdin_fd; /* closing it makes the emulator exit */
    int port;
    char *dir;
    char ready_line[4096];
} ut_emulator_t;

/* Starts the emulator serving pods_file (NULL: none) with extra args
 * (NULL-terminated, may be NULL); waits for its ready line (deadline 30 s).
 * Returns 0 or -1 (with the reason on stderr). */
int ut_emulator_start(ut_emulator_t *em, const char *pods_file, const char *const *extra);
/* Stops it (SIGTERM, then SIGKILL after a deadline), removes its dir. */
void ut_emulator_stop(ut_emulator_t *em);
/* Runs `kube_api_emulator.py ctl --state-dir DIR args...` (NULL-terminated):
 * "fault", "{...}" / "rotate-token" / "clear-faults" / "requests" /
 * "request" ...; its stdout into *out when out is not NULL. Returns its exit
 * code (0 ok). */
int ut_emulator_ctl(ut_emulator_t *em, const char *const *args, char **out);

/* ---- clusters of real nodes (management port 8558, cluster port 7355) */

/* A keyring file at path holding one new key (openssl rand -base64 32), as
 * cluster.keyring-path reads it; the key into key (45 bytes) when given.
 * Returns 0 or -1. */
int ut_keyring_write(const char *path, char *key, size_t keylen);
/* GET /cluster/members of the node at host:port, parsed (the caller frees
 * it with cJSON_Delete), or NULL when it does not answer 200. */
cJSON *ut_members(const char *host, int port, int timeout_ms);
/* The status ("Up", ...) of node ("ukko://ukko@host:7355") in a
 * /cluster/members answer, "" when it is not listed; its uid (33 bytes)
 * into uid when given. */
const char *ut_member_status(const cJSON *members, const char *node, char *uid);
/* True when each of the n nodes (management on hosts[i]:8558) is ready and
 * lists exactly the n, all Up, with one leader: one cluster. Otherwise
 * writes what it saw into seen. */
bool ut_one_cluster(const char *const *hosts, int n, char *seen, size_t seenlen);

#endif
