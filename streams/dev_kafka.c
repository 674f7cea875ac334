/* dev_kafka.c: `ukko dev-kafka`, a Kafka-protocol broker for local work: a
 * librdkafka mock cluster hosted by an idle producer handle. It owns the
 * command line, the process's signals, stdout (the bootstrap line, then one
 * reply per fault command read on stdin) and the mock's lifetime. Main thread
 * runs a libev loop; the mock runs on librdkafka's own threads, which log
 * through log_cb. Invariant: the first line of stdout is the bootstrap list,
 * written once every topic of the command line exists. */
#include "dev_kafka_internal.h"
#include "streams.h"

#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOPICS 256

typedef struct opts {
    int brokers;
    int ntopics;
    char names[MAX_TOPICS][STREAMS__TOPIC_NAME_MAX + 1];
    int partitions[MAX_TOPICS];
    ukko_log_level_t log_level;
    ukko_log_format_t log_format;
} opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "ukko dev-kafka: a Kafka-protocol broker for local work, built on librdkafka's\n"
            "mock cluster (librdkafka %s), in this process\n"
            "\n"
            "Usage:\n"
            "  ukko dev-kafka [--brokers N] [--topic NAME:PARTITIONS]... [options]\n"
            "\n"
            "Prints its bootstrap servers (127.0.0.1:PORT,...) as the first line of stdout,\n"
            "then serves until SIGTERM or SIGINT (exit 0). Logs go to stderr.\n"
            "\n"
            "Options:\n"
            "  --brokers N              brokers in the cluster, 1 to %d (default 1)\n"
            "  --topic NAME:PARTITIONS  create a topic (repeatable), partitions 1 to %d,\n"
            "                           replication factor min(3, brokers)\n"
            "  --log-format FMT         json (default) or text\n"
            "  --log-level LEVEL        debug (adds the mock's own protocol log), info\n"
            "                           (default), warn or error\n"
            "  --host ADDR, --port P    cannot be chosen: librdkafka 2.0.2's mock binds every\n"
            "                           broker to 127.0.0.1 on a port the kernel picks. Only\n"
            "                           --host 127.0.0.1 and --port 0 are accepted; read the\n"
            "                           ports from the first line of stdout\n"
            "  -h, --help               this text\n"
            "\n"
            "Topics not created here are created by the first client whose metadata request\n"
            "allows it (librdkafka producers do; consumers only with\n"
            "allow.auto.create.topics=true), with 4 partitions.\n"
            "\n"
            "What it is not: it is a mock, for local work and fault-injection tests.\n"
            "  - no persistence: every record and offset is gone when it stops\n"
            "  - keeps about 5 MiB (and at most 100,000 batches) per partition; older\n"
            "    batches are dropped, so consumers that fall behind lose records\n"
            "  - consumer-group rebalances run on fixed timers (3 s for the first join,\n"
            "    then session.timeout.ms less 1 s), not as Kafka's coordinator does\n"
            "  - no admin API (CreateTopics, DeleteTopics, DescribeGroups, ...), no TLS/SASL\n"
            "  - not for performance or group-protocol claims: use a real Kafka broker\n"
            "\n"
            "Fault injection: one command per line on stdin; each gets one reply line on\n"
            "stdout, \"ok: ...\" or \"error: ...\" (blank lines and # comments get none):\n"
            "  fail API COUNT ERROR     the next COUNT requests of API fail with ERROR\n"
            "                           (fail OffsetCommit 3 REQUEST_TIMED_OUT; ERROR\n"
            "                           _TRANSPORT closes the connection instead)\n"
            "  clear API                drop API's failures not yet used\n"
            "  down BROKER | up BROKER  take a broker down (connections closed, new ones\n"
            "                           refused) or back up\n"
            "  leader TOPIC PARTITION BROKER|none\n"
            "                           move a partition's leader (topics created here)\n"
            "  rtt BROKER MS            delay a broker's responses\n"
            "  topic NAME:PARTITIONS    create a topic\n"
            "  apis | errors | help     what the commands accept\n"
            "See docs/dev-kafka.md.\n",
            rd_kafka_version_str(), STREAMS__MAX_BROKERS, STREAMS__MAX_PARTITIONS);
}

/* Returns 0 to run, 1 for --help, -1 for bad usage (the message printed). */
static int parse(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->brokers = 1;
    o->log_level = UKKO_LOG_INFO;
    o->log_format = UKKO_LOG_JSON;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return 1;
        bool known = !strcmp(arg, "--brokers") || !strcmp(arg, "--topic") ||
                     !strcmp(arg, "--host") || !strcmp(arg, "--port") ||
                     !strcmp(arg, "--log-format") || !strcmp(arg, "--log-level");
        if (!known) {
            fprintf(stderr,
                    "ukko dev-kafka: unknown argument \"%s\" (options: --brokers, --topic, "
                    "--log-format, --log-level; see ukko dev-kafka --help)\n",
                    arg);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ukko dev-kafka: %s needs a value (see ukko dev-kafka --help)\n",
                    arg);
            return -1;
        }
        const char *v = argv[++i];
        if (!strcmp(arg, "--brokers")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > STREAMS__MAX_BROKERS) {
                fprintf(stderr,
                        "ukko dev-kafka: --brokers \"%s\": must be a whole number from 1 to %d "
                        "(e.g. --brokers 3)\n",
                        v, STREAMS__MAX_BROKERS);
                return -1;
            }
            o->brokers = (int)n;
        } else if (!strcmp(arg, "--topic")) {
            char err[600];
            if (o->ntopics == MAX_TOPICS) {
                fprintf(stderr, "ukko dev-kafka: --topic \"%s\": at most %d topics on the "
                                "command line (create more with the topic command on stdin)\n",
                        v, MAX_TOPICS);
                return -1;
            }
            if (streams__topic_spec_parse(v, o->names[o->ntopics], sizeof(o->names[0]),
                                          &o->partitions[o->ntopics], err, sizeof(err)) < 0) {
                fprintf(stderr, "ukko dev-kafka: --%s (see ukko dev-kafka --help)\n", err);
                return -1;
            }
            for (int k = 0; k < o->ntopics; k++)
                if (!strcmp(o->names[k], o->names[o->ntopics])) {
                    fprintf(stderr,
                            "ukko dev-kafka: --topic \"%s\": topic \"%s\" is given twice (give "
                            "each topic once)\n",
                            v, o->names[k]);
                    return -1;
                }
            o->ntopics++;
        } else if (!strcmp(arg, "--host")) {
            if (strcmp(v, "127.0.0.1") && strcmp(v, "localhost")) {
                fprintf(stderr,
                        "ukko dev-kafka: --host \"%s\": librdkafka 2.0.2's mock cluster listens "
                        "on 127.0.0.1 only, and cannot be told otherwise; run clients on this "
                        "machine, or use a real Kafka broker (tests/kafka/)\n",
                        v);
                return -1;
            }
        } else if (!strcmp(arg, "--port")) {
            if (strcmp(v, "0")) {
                fprintf(stderr,
                        "ukko dev-kafka: --port \"%s\": librdkafka 2.0.2's mock cluster binds "
                        "each broker to a port the kernel picks, and cannot be given one; read "
                        "the bootstrap servers from the first line of stdout\n",
                        v);
                return -1;
            }
        } else if (!strcmp(arg, "--log-format")) {
            if (!strcmp(v, "json"))
                o->log_format = UKKO_LOG_JSON;
            else if (!strcmp(v, "text"))
                o->log_format = UKKO_LOG_TEXT;
            else {
                fprintf(stderr, "ukko dev-kafka: --log-format \"%s\": allowed: json or text\n",
                        v);
                return -1;
            }
        } else { /* --log-level */
            ukko_log_level_t l;
            if (ukko_log_level_parse(v, &l) < 0 || l == UKKO_LOG_OFF) {
                fprintf(stderr,
                        "ukko dev-kafka: --log-level \"%s\": allowed: debug, info, warn or "
                        "error\n",
                        v);
                return -1;
            }
            o->log_level = l;
        }
    }
    return 0;
}

/* librdkafka's threads log here (syslog levels). */
static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *msg)
{
    (void)rk;
    /* The hosting handle has no brokers on purpose: its warning about that
     * would only mislead whoever reads the log. */
    if (!strcmp(fac, "CONFWARN") && strstr(msg, "bootstrap.servers"))
        level = 7;
    ukko_log_level_t l = level <= 3   ? UKKO_LOG_ERROR
                         : level == 4 ? UKKO_LOG_WARN
                         : level <= 6 ? UKKO_LOG_INFO
                                      : UKKO_LOG_DEBUG;
    ukko_logf(l, "dev-kafka", UKKO_FIELDS(UKKO_FS("librdkafka", fac)), "%s", msg);
}

/* ------------------------------------------------------ the running broker */

typedef struct broker_run {
    struct ev_loop *loop;
    ev_signal sig_int, sig_term;
    ev_io in;
    bool in_started;
    bool discarding; /* inside a line already refused as too long */
    ukko_buf_t line;
    ukko_buf_t reply;
    streams__mock_ctl_t ctl;
    const char *stop_reason;
} broker_run_t;

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    broker_run_t *d = w->data;
    d->stop_reason = w->signum == SIGINT ? "SIGINT" : "SIGTERM";
    ev_break(loop, EVBREAK_ALL);
}

/* One line to stdout, never blocking: a reader that stopped reading must not
 * stall the loop (and with it SIGTERM). Lines are shorter than PIPE_BUF, so
 * a pipe that polls writable takes the whole line at once; when it does not,
 * the line is dropped and the log says so. A reader that went away is no
 * reason to stop either (SIGPIPE is ignored). */
static void put_line(const char *s)
{
    char buf[PIPE_BUF];
    int n = snprintf(buf, sizeof(buf), "%s\n", s);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf)) {
        n = (int)sizeof(buf);
        buf[n - 1] = '\n';
    }
    struct pollfd pfd = {.fd = 1, .events = POLLOUT};
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT) ||
        write(1, buf, (size_t)n) != n)
        ukko_log(UKKO_LOG_WARN, "dev-kafka",
                 "control: a reply was dropped: stdout is full or closed (read the replies "
                 "as they come)");
}

static void run_line(broker_run_t *d, const char *p, size_t n)
{
    int rc = streams__mock_command(&d->ctl, p, n, &d->reply);
    if (d->reply.len == 0)
        return;
    put_line(d->reply.data);
    /* The command is echoed from the reply only: a refused line may hold
     * anything, and the reply names what it quotes safely. */
    ukko_logf(rc == 0 ? UKKO_LOG_INFO : UKKO_LOG_WARN, "dev-kafka",
              UKKO_FIELDS(UKKO_FB("ok", rc == 0)), "control: %s", d->reply.data);
}

static void refuse_long(broker_run_t *d)
{
    ukko_buf_reset(&d->reply);
    (void)ukko_buf_printf(&d->reply,
                          "error: a line longer than %d bytes: send one short command per line "
                          "(help lists them)",
                          STREAMS__CONTROL_LINE_MAX);
    put_line(d->reply.data);
    ukko_logf(UKKO_LOG_WARN, "dev-kafka", UKKO_FIELDS(UKKO_FB("ok", false)), "control: %s",
              d->reply.data);
}

static void control_close(broker_run_t *d, const char *why)
{
    if (d->in_started)
        ev_io_stop(d->loop, &d->in);
    d->in_started = false;
    ukko_log(UKKO_LOG_INFO, "dev-kafka",
             "control: stdin %s: no more fault commands; the broker keeps running until "
             "SIGTERM or SIGINT",
             why);
}

static void on_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    broker_run_t *d = w->data;
    char chunk[4096];
    /* One read per wake-up and stdin left blocking: it may be a terminal the
     * shell shares, whose flags must not change under it. */
    ssize_t n = read(w->fd, chunk, sizeof(chunk));
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return;
        /* EIO: a background job reading its terminal (SIGTTIN is ignored). */
        control_close(d, errno == EIO ? "is the terminal of a background job" : strerror(errno));
        return;
    }
    if (n == 0) {
        if (d->line.len && !d->discarding)
            run_line(d, d->line.data, d->line.len);
        ukko_buf_reset(&d->line);
        control_close(d, "ended");
        return;
    }
    const char *p = chunk, *end = chunk + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl ? nl : end) - p);
        if (!d->discarding) {
            if (d->line.len + take > STREAMS__CONTROL_LINE_MAX + 1) {
                /* Refuse it once, now, and skip the rest of it. */
                refuse_long(d);
                d->discarding = true;
                ukko_buf_reset(&d->line);
            } else if (take && ukko_buf_append(&d->line, p, take) < 0) {
                d->discarding = true;
            }
        }
        if (!nl)
            break;
        if (!d->discarding)
            run_line(d, d->line.data ? d->line.data : "", d->line.len);
        d->discarding = false;
        ukko_buf_reset(&d->line);
        p = nl + 1;
    }
}

static int serve(const opts_t *o, int64_t t0)
{
    int rc = 1;
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    broker_run_t d;
    memset(&d, 0, sizeof(d));
    ukko_buf_init(&d.line, STREAMS__CONTROL_LINE_MAX + 2);
    ukko_buf_init(&d.reply, 0);

    /* Signals first: one that comes while the mock starts, or right after
     * the bootstrap line, is then an orderly stop once the loop runs. */
    d.loop = ev_default_loop(0);
    if (!d.loop) {
        ukko_log(UKKO_LOG_ERROR, "dev-kafka", "cannot create the event loop (libev)");
        goto out;
    }
    ev_signal_init(&d.sig_int, on_signal, SIGINT);
    ev_signal_init(&d.sig_term, on_signal, SIGTERM);
    d.sig_int.data = d.sig_term.data = &d;
    ev_signal_start(d.loop, &d.sig_int);
    ev_signal_start(d.loop, &d.sig_term);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    if (rd_kafka_conf_set(conf, "client.id", "ukko-dev-kafka", errstr, sizeof(errstr)) ||
        (o->log_level == UKKO_LOG_DEBUG &&
         rd_kafka_conf_set(conf, "debug", "mock", errstr, sizeof(errstr)))) {
        ukko_log(UKKO_LOG_ERROR, "dev-kafka", "librdkafka refused its config: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    /* The handle only hosts the mock: it has no bootstrap servers and sends
     * nothing. It takes conf. */
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        ukko_log(UKKO_LOG_ERROR, "dev-kafka", "cannot create the librdkafka handle: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    mc = rd_kafka_mock_cluster_new(rk, o->brokers);
    if (!mc) {
        ukko_log(UKKO_LOG_ERROR, "dev-kafka",
                 "cannot start a mock cluster of %d broker(s) on 127.0.0.1 (see the librdkafka "
                 "lines above; are file descriptors or local ports exhausted?)",
                 o->brokers);
        goto out;
    }
    d.ctl.mc = mc;
    d.ctl.brokers = o->brokers;
    for (int i = 0; i < o->ntopics; i++) {
        char err[600];
        if (streams__mock_topic_create(&d.ctl, o->names[i], o->partitions[i], err,
                                       sizeof(err)) < 0) {
            ukko_log(UKKO_LOG_ERROR, "dev-kafka", "%s", err);
            goto out;
        }
        ukko_logf(UKKO_LOG_INFO, "dev-kafka",
                  UKKO_FIELDS(UKKO_FS("topic", o->names[i]),
                              UKKO_FI("partitions", o->partitions[i])),
                  "topic %s created with %d partition(s)", o->names[i], o->partitions[i]);
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    /* Blocking, unlike the replies: this line is the contract. */
    printf("%s\n", bootstraps);
    fflush(stdout);

    bool have_stdin = fcntl(0, F_GETFD) != -1;
    if (have_stdin) {
        ev_io_init(&d.in, on_stdin, 0, EV_READ);
        d.in.data = &d;
        ev_io_start(d.loop, &d.in);
        d.in_started = true;
    }
    ukko_logf(UKKO_LOG_INFO, "dev-kafka",
              UKKO_FIELDS(UKKO_FS("bootstrap_servers", bootstraps), UKKO_FI("brokers", o->brokers),
                          UKKO_FI("topics", o->ntopics), UKKO_FI("startup_ms", ukko_now_ms() - t0),
                          UKKO_FS("librdkafka", rd_kafka_version_str())),
              "dev-kafka serving on %s (a mock: no persistence, about 5 MiB per partition; "
              "fault commands on stdin%s)",
              bootstraps, have_stdin ? "" : ", which is closed");
    ev_run(d.loop, 0);

    ukko_log(UKKO_LOG_INFO, "dev-kafka", "stopping on %s", d.stop_reason ? d.stop_reason : "?");
    if (d.in_started)
        ev_io_stop(d.loop, &d.in);
    rc = 0;
out:
    if (d.loop) {
        ev_signal_stop(d.loop, &d.sig_int);
        ev_signal_stop(d.loop, &d.sig_term);
    }
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    streams__mock_ctl_destroy(&d.ctl);
    ukko_buf_destroy(&d.line);
    ukko_buf_destroy(&d.reply);
    if (rc == 0)
        ukko_log(UKKO_LOG_INFO, "dev-kafka", "stopped");
    return rc;
}

int ukko_streams_dev_kafka_main(int argc, char **argv)
{
    int64_t t0 = ukko_now_ms();
    opts_t *o = calloc(1, sizeof(*o));
    if (!o) {
        fprintf(stderr, "ukko dev-kafka: out of memory\n");
        return 1;
    }
    int rc = parse(argc, argv, o);
    if (rc != 0) {
        if (rc > 0)
            usage(stdout);
        free(o);
        return rc > 0 ? 0 : 2;
    }
    ukko_log_setup(o->log_level, o->log_format);
    /* Replies to a reader that left must not kill the broker; a background
     * job reading its terminal gets EIO instead of being stopped. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    rc = serve(o, t0);
    free(o);
    return rc;
}
