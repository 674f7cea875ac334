/* devkafka_fixture.h: runs a real `ukko dev-kafka` process for tests: its
 * bootstrap line, its fault channel (a pipe to its stdin, replies read from
 * its stdout) and its stop. The at-least-once tests of streams/ use it to
 * make Kafka requests fail on cue. Single-threaded; one fixture per process
 * at a time is the usual use, several work. */
#ifndef UKKO_DEVKAFKA_FIXTURE_H
#define UKKO_DEVKAFKA_FIXTURE_H

#include "ukko_test.h"

#include <stddef.h>
#include <sys/types.h>

typedef struct dk_proc {
    pid_t pid;
    int in_fd;           /* write end of its stdin, or -1 once closed */
    int out_fd;          /* read end of its stdout */
    char bootstrap[512]; /* "127.0.0.1:P1,127.0.0.1:P2" */
    char *dir;           /* temp dir holding its stderr (log) */
    char log_path[600];
    ukko_buf_t pending;  /* stdout read but not yet returned as a line */
    bool started;        /* false in a zeroed fixture: dk_stop does nothing */
} dk_proc_t;

/* Starts `ukko dev-kafka ARGS...` (args NULL-terminated, may be NULL) and
 * waits up to timeout_ms for its first stdout line, the bootstrap servers.
 * Its stderr goes to dk->log_path; it dies with the test process. Returns 0,
 * or -1 with the reason and its log in why (owned by the caller, may be
 * NULL), the process stopped. */
int dk_start(dk_proc_t *dk, const char *const args[], int timeout_ms, ukko_buf_t *why);
/* Writes one command line and reads its one reply line (no newline) into
 * reply. Returns 0, or -1 when no reply came within timeout_ms. */
int dk_command(dk_proc_t *dk, const char *line, ukko_buf_t *reply, int timeout_ms);
/* Reads the next stdout line within timeout_ms: 0, or -1 (timeout or EOF). */
int dk_read_line(dk_proc_t *dk, ukko_buf_t *line, int timeout_ms);
/* Closes its stdin: the fault channel ends, the broker keeps running. */
void dk_close_stdin(dk_proc_t *dk);
/* Sends sig and waits up to timeout_ms; returns ut_stop's result (the exit
 * code, 128+signal, or -1 when it had to be killed). Frees everything and
 * removes the temp dir; safe on a zeroed fixture or one already stopped. */
int dk_stop(dk_proc_t *dk, int sig, int timeout_ms);

#endif
