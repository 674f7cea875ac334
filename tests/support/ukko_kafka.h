/* ukko_kafka.h: a real Apache Kafka broker for C tests, run through
 * tests/kafka/broker.sh (KRaft, 1 or N nodes on loopback, jars from Maven).
 * A rig lives in its own state folder and dies with the process that started
 * it. Single-threaded; each call runs broker.sh and waits for it.
 *
 * One rig for a whole Criterion file (Criterion re-executes the program for
 * each test, so globals set before the tests are not seen in them):
 *
 *   static ukko_kafka_rig_t rig;
 *   ReportHook(PRE_ALL)(struct criterion_test_set *s) { ukko_kafka_rig_share(&rig, NULL); }
 *   ReportHook(POST_ALL)(struct criterion_global_stats *s) { ukko_kafka_rig_stop(&rig); }
 *   Test(x, y) { ukko_kafka_rig_t k; int rc = ukko_kafka_rig_attach(&k);
 *                if (rc == UKKO_KAFKA_RIG_SKIP) cr_skip_test("%s", k.why); ... }
 */
#ifndef UKKO_KAFKA_H
#define UKKO_KAFKA_H

#include <stdbool.h>
#include <sys/types.h>

/* Returned when no real Kafka can run on this machine (no Java 17, Maven or
 * kcat, or Maven cannot fetch the jars): the rig's why then reads
 * "SKIPPED: no real Kafka (<reason>)", to be printed as the test's verdict. */
#define UKKO_KAFKA_RIG_SKIP 1

typedef struct ukko_kafka_rig_opts {
    int brokers;               /* nodes, each broker+controller; 0: 1 */
    const char *host;          /* loopback address; NULL: 127.0.4.1 */
    const char *const *props;  /* extra server.properties lines "key=value", NULL-ended; may be NULL */
    int timeout_s;             /* deadline of start and restart; 0: broker.sh's (90 s) */
} ukko_kafka_rig_opts_t;

typedef struct ukko_kafka_rig {
    char state[512];      /* the rig's folder: node-N/{pid,data/,broker.log,server.properties} */
    char bootstrap[512];  /* "host:port,host:port,..." */
    int brokers;
    bool owner;           /* this process started it; _stop removes it */
    char why[2048];       /* after a failure or a skip: what happened, for people */
} ukko_kafka_rig_t;

/* Starts a rig in a new temp folder and waits until it answers metadata.
 * opts may be NULL. The rig is stopped by broker.sh's watchdog when this
 * process exits, even if it never calls _stop. Returns 0, UKKO_KAFKA_RIG_SKIP,
 * or -1 (broker.sh failed: why holds its message and where its logs are; the
 * processes are gone, the folder stays for a person until _stop). */
int ukko_kafka_rig_start(ukko_kafka_rig_t *rig, const ukko_kafka_rig_opts_t *opts);
/* Kills the rig's processes and removes its folder. Safe on a rig that never
 * started or is already stopped. Only the process that started it removes it. */
void ukko_kafka_rig_stop(ukko_kafka_rig_t *rig);

/* _start, then puts the outcome (bootstrap, state folder, or the reason for a
 * skip or a failure) into this process's environment, where _attach finds it
 * in the processes Criterion runs the tests in. Prints the skip line
 * ("SKIPPED: no real Kafka (...)") or the failure on stderr. Same returns. */
int ukko_kafka_rig_share(ukko_kafka_rig_t *rig, const ukko_kafka_rig_opts_t *opts);
/* Fills rig from what _share put in the environment. Returns 0,
 * UKKO_KAFKA_RIG_SKIP or -1 as _share did (why says why). The rig it gives
 * is not the owner: _stop on it does nothing. */
int ukko_kafka_rig_attach(ukko_kafka_rig_t *rig);

/* Creates topic name with partitions partitions (replication: 0 means the
 * number of brokers) and waits until each partition has a leader. An existing
 * topic is left as it is. 0 or -1 (why). */
int ukko_kafka_rig_topic(ukko_kafka_rig_t *rig, const char *name, int partitions,
                         int replication);
/* Produces lines "KEY\tVALUE\n" with Kafka's own Java producer (its default
 * partitioner), an independent client. 0 or -1 (why). */
int ukko_kafka_rig_produce_java(ukko_kafka_rig_t *rig, const char *topic, const char *lines);
/* Runs a main class of Kafka's jars (e.g. "kafka.tools.DumpLogSegments") with
 * args (NULL-ended); out (may be NULL) receives up to out_size-1 bytes of its
 * stdout, NUL-ended. Returns the tool's exit code, or -1. */
int ukko_kafka_rig_java(ukko_kafka_rig_t *rig, const char *main_class, const char *const args[],
                        char *out, size_t out_size);

/* Faults, node 1..brokers: SIGSTOP, SIGCONT, SIGKILL (data and port kept),
 * SIGTERM with a wait for the exit, and a start on the same data and port
 * that waits until the rig answers metadata again. 0 or -1 (why). */
int ukko_kafka_rig_pause(ukko_kafka_rig_t *rig, int node);
int ukko_kafka_rig_resume(ukko_kafka_rig_t *rig, int node);
int ukko_kafka_rig_kill(ukko_kafka_rig_t *rig, int node);
int ukko_kafka_rig_term(ukko_kafka_rig_t *rig, int node);
int ukko_kafka_rig_restart(ukko_kafka_rig_t *rig, int node);

/* The node id that leads topic's partition, or -1 (why). */
int ukko_kafka_rig_leader(ukko_kafka_rig_t *rig, const char *topic, int partition);
/* The pid of node's JVM as recorded in the state folder, or -1. */
pid_t ukko_kafka_rig_pid(const ukko_kafka_rig_t *rig, int node);

#endif
