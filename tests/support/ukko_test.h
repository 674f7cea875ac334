/* ukko_test.h: helpers for tests that run real `ukko` processes: spawn with
 * an environment, raw HTTP over TCP, polling with deadlines, orderly stops.
 * Used by the integration tests of every folder. Single-threaded. */
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
/* Reads a whole file into out; 0 or -1. */
int ut_read_file(const char *path, ukko_buf_t *out);
/* A new private temp dir (mkdtemp) and its recursive removal. */
char *ut_tempdir(void);
void ut_rmtree(const char *dir);

#endif
