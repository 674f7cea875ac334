/* Integration: the `ukko dev-kafka` process itself (streams/dev_kafka.c,
 * streams/mock_control.c): its bootstrap line and listening brokers, its
 * --help, bad flags (exit 2, naming the value and the way out), a fault
 * channel that survives any input, and orderly stops on SIGTERM and SIGINT
 * that leave no process and no listener. Needs no Kafka client; the kcat
 * tests are in test_dev_kafka_kcat.c. Listens on 127.0.0.1 (the mock's only
 * address) on ports the kernel picks. */
#include "devkafka_fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dk_proc_t dk;

static void stop_all(void)
{
    dk_stop(&dk, SIGKILL, 5000);
}

TestSuite(dev_kafka, .fini = stop_all, .timeout = 60);

static void start(const char *const args[])
{
    ukko_buf_t why;
    ukko_buf_init(&why, 0);
    if (dk_start(&dk, args, 10000, &why) < 0)
        cr_assert_fail("ukko dev-kafka did not start: %s", why.data ? why.data : "?");
    ukko_buf_destroy(&why);
}

/* The ports of "127.0.0.1:P1,127.0.0.1:P2,...", n of them at most. */
static int bootstrap_ports(const char *boot, int *ports, int max)
{
    int n = 0;
    for (const char *p = boot; p && *p && n < max;) {
        cr_assert(!strncmp(p, "127.0.0.1:", 10), "each bootstrap server is on 127.0.0.1: %s",
                  boot);
        ports[n++] = atoi(p + 10);
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return n;
}

static bool listening(int port)
{
    int fd = ut_connect("127.0.0.1", port, 1000);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static bool log_contains(const char *what)
{
    ukko_buf_t log;
    ukko_buf_init(&log, 0);
    ut_read_file(dk.log_path, &log);
    bool found = log.data && strstr(log.data, what);
    ukko_buf_destroy(&log);
    return found;
}

Test(dev_kafka, first_line_is_the_bootstrap_list_of_listening_brokers)
{
    start((const char *const[]){"--brokers", "3", "--topic", "t:3", "--topic", "u:12", NULL});
    int ports[8];
    int n = bootstrap_ports(dk.bootstrap, ports, 8);
    cr_assert_eq(n, 3, "3 brokers give 3 bootstrap servers: \"%s\"", dk.bootstrap);
    for (int i = 0; i < n; i++) {
        cr_assert(ports[i] > 0 && ports[i] < 65536, "a port in \"%s\"", dk.bootstrap);
        cr_assert(listening(ports[i]), "broker %d listens on 127.0.0.1:%d", i + 1, ports[i]);
    }
    /* Logs go to stderr, as JSON lines by default, and name the topics. */
    int64_t deadline = ukko_now_ms() + 5000;
    while (!log_contains("\"startup_ms\"") && ukko_now_ms() < deadline)
        usleep(10000);
    cr_assert(log_contains("{\"ts\":"), "logs are JSON lines by default");
    cr_assert(log_contains("\"topic\":\"u\",\"partitions\":12"), "the log names topic u");
    cr_assert(!log_contains("No `bootstrap.servers`"),
              "the hosting handle's warning about its missing brokers is not logged");
    cr_assert_eq(dk_stop(&dk, SIGTERM, 10000), 0);
}

Test(dev_kafka, text_logs_on_request)
{
    start((const char *const[]){"--log-format", "text", NULL});
    int64_t deadline = ukko_now_ms() + 5000;
    while (!log_contains("dev-kafka serving on") && ukko_now_ms() < deadline)
        usleep(10000);
    cr_assert(log_contains(" info  dev-kafka: dev-kafka serving on 127.0.0.1:"),
              "--log-format text writes text lines");
    cr_assert(!log_contains("{\"ts\":"), "and no JSON");
}

Test(dev_kafka, help_says_what_it_is_not)
{
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(ut_run(UKKO_BIN " dev-kafka --help", NULL, &out), 0);
    const char *must[] = {"no persistence", "5 MiB", "fixed timers", "not for performance",
                          "127.0.0.1 on a port the kernel picks", "fail API COUNT ERROR",
                          "with 4 partitions"};
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        cr_assert(strstr(out.data, must[i]), "dev-kafka --help says \"%s\":\n%s", must[i],
                  out.data);
    ukko_buf_reset(&out);
    cr_assert_eq(ut_run(UKKO_BIN " --help", NULL, &out), 0);
    cr_assert(strstr(out.data, "ukko dev-kafka"), "ukko --help lists dev-kafka:\n%s", out.data);
    ukko_buf_destroy(&out);
}

Test(dev_kafka, bad_flags_exit_2_naming_the_value_and_the_way_out)
{
    const struct {
        const char *args;
        const char *says[2];
    } cases[] = {
        {"--topic orders", {"\"orders\" has no partition count", "NAME:PARTITIONS"}},
        {"--topic orders:0", {"\"orders:0\"", "from 1 to"}},
        {"--topic orders:x", {"\"orders:x\"", "e.g. orders:3"}},
        {"--topic :3", {"\":3\"", "1 to 249 characters"}},
        {"--topic 'a b:3'", {"\"a b:3\"", "letters, digits"}},
        {"--topic t:1 --topic t:2", {"\"t\" is given twice", "once"}},
        {"--brokers 0", {"--brokers \"0\"", "from 1 to 32"}},
        {"--brokers 33", {"--brokers \"33\"", "from 1 to 32"}},
        {"--brokers three", {"--brokers \"three\"", "e.g. --brokers 3"}},
        {"--brokers", {"--brokers needs a value", "--help"}},
        {"--port 9092", {"--port \"9092\"", "first line of stdout"}},
        {"--host 0.0.0.0", {"--host \"0.0.0.0\"", "127.0.0.1 only"}},
        {"--log-format xml", {"\"xml\"", "json or text"}},
        {"--bogus", {"unknown argument \"--bogus\"", "--help"}},
    };
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "%s dev-kafka %s", UKKO_BIN, cases[i].args);
        ukko_buf_reset(&out);
        int rc = ut_run(cmd, NULL, &out);
        cr_expect_eq(rc, 2, "dev-kafka %s: exit 2, got %d:\n%s", cases[i].args, rc, out.data);
        for (int k = 0; k < 2; k++)
            cr_expect(out.data && strstr(out.data, cases[i].says[k]),
                      "dev-kafka %s says \"%s\"; it said:\n%s", cases[i].args, cases[i].says[k],
                      out.data);
    }
    ukko_buf_destroy(&out);
}

Test(dev_kafka, sigterm_and_sigint_stop_it_cleanly)
{
    const int sigs[] = {SIGTERM, SIGINT};
    for (int s = 0; s < 2; s++) {
        start((const char *const[]){"--brokers", "2", "--topic", "t:3", NULL});
        int ports[4];
        int n = bootstrap_ports(dk.bootstrap, ports, 4);
        pid_t pid = dk.pid;
        cr_assert_eq(dk_stop(&dk, sigs[s], 10000), 0, "signal %d: an orderly exit 0",
                     sigs[s]);
        cr_assert(kill(pid, 0) < 0 && errno == ESRCH, "no process is left (pid %d)", (int)pid);
        for (int i = 0; i < n; i++)
            cr_assert(!listening(ports[i]), "nothing listens on %d any more", ports[i]);
    }
}

Test(dev_kafka, the_broker_outlives_its_closed_stdin)
{
    start((const char *const[]){"--topic", "t:1", NULL});
    int ports[1];
    bootstrap_ports(dk.bootstrap, ports, 1);
    dk_close_stdin(&dk);
    int64_t deadline = ukko_now_ms() + 5000;
    while (!log_contains("control: stdin ended") && ukko_now_ms() < deadline)
        usleep(10000);
    cr_assert(log_contains("control: stdin ended"), "the log says the fault channel ended");
    cr_assert(listening(ports[0]), "and the broker still serves");
    cr_assert_eq(dk_stop(&dk, SIGTERM, 10000), 0);
}

Test(dev_kafka, the_fault_channel_survives_any_input)
{
    start((const char *const[]){"--brokers", "2", "--topic", "t:3", NULL});
    ukko_buf_t r;
    ukko_buf_init(&r, 0);
    const struct {
        const char *line;
        const char *reply;
    } bad[] = {
        {"fail Fetchh 2 NOT_LEADER_OR_FOLLOWER", "error: fail: unknown API \"Fetchh\": allowed"},
        {"fail Fetch 2 NOT_A_REAL_ERROR", "error: fail: unknown error \"NOT_A_REAL_ERROR\""},
        {"fail Fetch 0 REQUEST_TIMED_OUT", "error: fail: count \"0\""},
        {"fail Fetch 99999999999999999999 REQUEST_TIMED_OUT", "error: fail: count"},
        {"fail Fetch -1 REQUEST_TIMED_OUT", "error: fail: count \"-1\""},
        {"fail Fetch 2 -1", "error: fail: unknown error \"-1\""},
        {"fail Fetch", "error: fail: usage"},
        {"down 0", "error: down: broker \"0\" does not exist: the brokers are 1 to 2"},
        {"up 3", "error: up: broker \"3\" does not exist"},
        {"leader t 3 1", "error: leader: partition \"3\" of \"t\" does not exist"},
        {"leader t -1 1", "error: leader: partition \"-1\""},
        {"leader nosuch 0 1", "error: leader: topic \"nosuch\" was not created by dev-kafka"},
        {"leader t 0 9", "error: leader: broker \"9\" does not exist"},
        {"rtt 1 -5", "error: rtt: \"-5\""},
        {"topic t:3", "error: topic: topic \"t\" exists already"},
        {"topic bad/name:3", "error: topic: topic \"bad/name:3\""},
        {"explode now", "error: unknown command \"explode\""},
        {"a b c d e f g h i j", "error: too many words"},
        {"fail\x01 Fetch", "error: byte 0x01"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(dk_command(&dk, bad[i].line, &r, 5000), 0, "a reply to \"%s\"",
                     bad[i].line);
        cr_expect(!strncmp(r.data, bad[i].reply, strlen(bad[i].reply)),
                  "\"%s\" is answered \"%s...\", got \"%s\"", bad[i].line, bad[i].reply, r.data);
    }
    /* The refusals list what is allowed. */
    cr_assert_eq(dk_command(&dk, "fail Fetchh 1 REQUEST_TIMED_OUT", &r, 5000), 0);
    cr_assert(strstr(r.data, "OffsetCommit") && strstr(r.data, "Fetch"), "%s", r.data);
    cr_assert_eq(dk_command(&dk, "fail Fetch 1 NOPE", &r, 5000), 0);
    cr_assert(strstr(r.data, "REQUEST_TIMED_OUT") && strstr(r.data, "NOT_LEADER_OR_FOLLOWER"),
              "%s", r.data);

    /* Seeded garbage, a line far over the cap, and NUL bytes: no reply is
     * promised for these, only that the broker lives on. */
    unsigned seed = 12345;
    char junk[8192];
    for (int round = 0; round < 4; round++) { /* ~130 replies: well inside a pipe */
        for (size_t i = 0; i < sizeof(junk); i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (char)(seed >> 16);
        }
        cr_assert_eq(write(dk.in_fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    }
    memset(junk, 'x', sizeof(junk));
    cr_assert_eq(write(dk.in_fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    memset(junk, 0, 64);
    cr_assert_eq(write(dk.in_fd, junk, 64), 64);
    cr_assert_eq(write(dk.in_fd, "\n", 1), 1);
    /* Whatever the junk produced, the broker still answers in order: skip
     * replies until the one to a marker command. */
    cr_assert_eq(dk_command(&dk, "topic marker:1", &r, 5000), 0);
    int64_t deadline = ukko_now_ms() + 10000;
    while (strcmp(r.data, "ok: topic marker created with 1 partition(s)") &&
           ukko_now_ms() < deadline)
        cr_assert_eq(dk_read_line(&dk, &r, 5000), 0, "the broker answers after the junk");
    cr_assert_str_eq(r.data, "ok: topic marker created with 1 partition(s)");
    cr_assert_eq(kill(dk.pid, 0), 0, "the broker is alive");
    cr_assert_eq(dk_command(&dk, "help", &r, 5000), 0);
    cr_assert(!strncmp(r.data, "ok: commands: fail API COUNT ERROR", 34), "%s", r.data);

    /* Blank lines and comments get no reply: the next reply is the help's. */
    cr_assert_eq(write(dk.in_fd, "\n  \n# a comment\n", 16), 16);
    cr_assert_eq(dk_command(&dk, "HELP", &r, 5000), 0);
    cr_assert(!strncmp(r.data, "ok: commands:", 13), "%s", r.data);
    ukko_buf_destroy(&r);
    cr_assert_eq(dk_stop(&dk, SIGTERM, 10000), 0);
}
