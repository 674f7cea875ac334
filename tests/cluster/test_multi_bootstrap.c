/* Multi-process tests of the bootstrap (cluster/bootstrap.c, cluster/leave.c,
 * the seed-nodes and member-operation routes): real `ukko` nodes that find
 * each other through the Kubernetes API emulator over TLS, on
 * 127.0.0.140-127.0.0.199 (other suites use other ranges). The StatefulSet
 * tests let the emulator's controller run the pods; the others start the
 * processes themselves, to choose the order, the delays and the faults.
 * Every process dies with the test (PR_SET_PDEATHSIG; the emulator and its
 * pods with it), and .fini kills what is left and removes the files.
 * Conditions are polled with deadlines; nothing is asserted about timings. */
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXP 10

extern char **environ;

static ut_emulator_t em;
static pid_t pids[MAXP];
static char ips[MAXP][32];
static char keyring[600];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void kill_all(void)
{
    for (int i = 0; i < MAXP; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    }
}

static void teardown(void)
{
    kill_all();
    ut_emulator_stop(&em);
}

/* ------------------------------------------------------------ emulator */

static void write_keyring(void)
{
    snprintf(keyring, sizeof(keyring), "%s/keyring.json", em.dir);
    cr_assert_eq(ut_keyring_write(keyring, NULL, 0), 0, "a keyring at %s", keyring);
}

/* The demo's StatefulSet with n replicas, its pods given the keyring and
 * quick stops (the test's own SIGKILL ends whatever lingers). */
static void write_statefulset(const char *path, int n)
{
    char *text = ut_slurp(UKKO_SOURCE_DIR "/tests/emulator/ukko-statefulset.json", NULL);
    cr_assert_not_null(text);
    cJSON *sts = cJSON_Parse(text);
    free(text);
    cJSON *spec = cJSON_GetObjectItem(sts, "spec");
    cJSON_ReplaceItemInObject(spec, "replicas", cJSON_CreateNumber(n));
    cJSON *pod = cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "template"), "spec");
    cJSON_ReplaceItemInObject(pod, "terminationGracePeriodSeconds", cJSON_CreateNumber(20));
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(pod, "containers"), 0);
    cJSON *env = cJSON_GetObjectItem(c, "env");
    cJSON *kr = cJSON_CreateObject();
    cJSON_AddStringToObject(kr, "name", "UKKO_CLUSTER_KEYRING_PATH");
    cJSON_AddStringToObject(kr, "value", keyring);
    cJSON_AddItemToArray(env, kr);
    char *out = cJSON_Print(sts);
    cr_assert_eq(ut_write_file(path, out), 0);
    free(out);
    cJSON_Delete(sts);
}

/* The emulator and its controller running a StatefulSet of n pods on
 * 127.0.0.(first)... */
static void start_statefulset(int n, int first)
{
    char range[64];
    snprintf(range, sizeof(range), "127.0.0.%d-127.0.0.%d", first, first + MAXP - 1);
    /* The keyring must exist before the pods start: start without the set,
     * write both, then create it through the API as kubectl apply would. */
    const char *args[] = {"--controller", "--ukko",         UKKO_BIN, "--pod-addresses", range,
                          "--probe-period-ms", "200", NULL};
    cr_assert_eq(ut_emulator_start(&em, NULL, args), 0, "the emulator did not start");
    write_keyring();
    char path[600];
    snprintf(path, sizeof(path), "%s/sts.json", em.dir);
    write_statefulset(path, n);
    char *body = ut_slurp(path, NULL);
    const char *req[] = {"request", "POST", "/apis/apps/v1/namespaces/default/statefulsets", body,
                         NULL};
    cr_assert_eq(ut_emulator_ctl(&em, req, NULL), 0, "the StatefulSet was not created");
    free(body);
    for (int i = 0; i < n; i++)
        snprintf(ips[i], sizeof(ips[i]), "127.0.0.%d", first + i);
}

static void emu_ctl(const char *const *args, char **out)
{
    cr_assert_eq(ut_emulator_ctl(&em, args, out), 0, "emulator ctl %s %s failed", args[0],
                 args[1] ? args[1] : "");
}

static void scale(int n)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"spec\":{\"replicas\":%d}}", n);
    emu_ctl((const char *[]){"request", "PATCH", "/apis/apps/v1/namespaces/default/statefulsets/ukko",
                             body, "--content-type", "application/merge-patch+json", NULL},
            NULL);
}

/* The last 3 KiB of a pod's log (the controller's pods) or a node's (ours). */
static void log_tail(const char *path, char *out, size_t outlen)
{
    size_t len = 0;
    char *text = ut_slurp(path, &len);
    snprintf(out, outlen, "%s", !text ? "(no log)" : len > 3000 ? text + len - 3000 : text);
    free(text);
}

static void pod_log_path(const char *pod, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/pods/default_%s.log", em.dir, pod);
}

/* Who listens on port 8558 (a process bound to 0.0.0.0:8558 takes the port
 * from every address): for failure messages. */
static void listeners(char *out, size_t outlen)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    ut_run("ss -ltnpH 'sport = :8558' 2>&1 | head -20", NULL, &b);
    snprintf(out, outlen, "%s", b.data ? b.data : "");
    ukko_buf_destroy(&b);
}

/* --------------------------------------------------------- the nodes */

static cJSON *members_of(const char *ip)
{
    return ut_members(ip, 8558, 5000);
}

static bool ready(const char *ip)
{
    return ut_http(ip, 8558, "GET", "/ready", NULL, 5000) == 200;
}

/* True when each of the n nodes is ready and sees exactly the n of them,
 * all Up, with one leader: one cluster. Else says what it saw. */
static bool one_cluster(int n, char *seen, size_t seenlen)
{
    const char *hosts[MAXP];
    for (int i = 0; i < n; i++)
        hosts[i] = ips[i];
    return ut_one_cluster(hosts, n, seen, seenlen);
}

/* Set by the tests that start the processes themselves: restarts a node
 * whose process ended (as a kubelet would), e.g. when its port was taken
 * for a moment by a process of another suite. */
static void (*restart_exited)(int n);

static bool wait_one_cluster(int n, int timeout_ms, char *seen, size_t seenlen)
{
    int64_t end = ut_now_ms() + timeout_ms;
    do {
        if (one_cluster(n, seen, seenlen))
            return true;
        if (restart_exited)
            restart_exited(n);
        sleep_ms(100);
    } while (ut_now_ms() < end);
    return false;
}

/* The members (addresses) that node ip lists, as "a Up,b Joining". */
static void view_of(const char *ip, char *out, size_t outlen)
{
    out[0] = '\0';
    cJSON *j = members_of(ip);
    cJSON *m;
    size_t k = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "members"))
    {
        k += (size_t)snprintf(out + k, outlen > k ? outlen - k : 0, "%s%s %s", k ? "," : "",
                              cJSON_GetStringValue(cJSON_GetObjectItem(m, "node")),
                              cJSON_GetStringValue(cJSON_GetObjectItem(m, "status")));
    }
    cJSON_Delete(j);
}

/* ------------------------------------------------- our own processes */

/* A pod as the API lists it: Running with its IP, labelled, owned by the
 * StatefulSet ukko when owned. */
static void post_pod(const char *name, const char *ip, bool owned)
{
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"app\":\"ukko\"}%s},"
             "\"spec\":{\"containers\":[{\"name\":\"ukko\",\"image\":\"ukko\",\"ports\":"
             "[{\"name\":\"management\",\"containerPort\":8558}]}]},"
             "\"status\":{\"phase\":\"Running\",\"podIP\":\"%s\"}}",
             name,
             owned ? ",\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\","
                     "\"name\":\"ukko\",\"uid\":\"u\",\"controller\":true}]"
                   : "",
             ip);
    emu_ctl((const char *[]){"request", "POST", "/api/v1/namespaces/default/pods", body, NULL},
            NULL);
}

/* Starts node i as the pod `pod` would run it: the API server and the
 * service-account files from the emulator, its address, the keyring, and
 * extra "K=V" settings. */
static void spawn(int i, const char *pod, const char *token, const char *const *extra)
{
    char e[16][700];
    size_t n = 0;
    /* The extras first: getenv and the config loader take the first. */
    for (const char *const *x = extra; x && *x && n < 6; x++)
        snprintf(e[n++], 700, "%s", *x);
    snprintf(e[n++], 700, "KUBERNETES_SERVICE_HOST=127.0.0.1");
    snprintf(e[n++], 700, "KUBERNETES_SERVICE_PORT=%d", em.port);
    snprintf(e[n++], 700, "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s", token);
    snprintf(e[n++], 700, "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s/ca.crt", em.dir);
    snprintf(e[n++], 700, "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH=%s/namespace", em.dir);
    snprintf(e[n++], 700, "HOSTNAME=%s", pod);
    snprintf(e[n++], 700, "UKKO_MANAGEMENT_HOSTNAME=%s", ips[i]);
    snprintf(e[n++], 700, "UKKO_CLUSTER_HOSTNAME=%s", ips[i]);
    snprintf(e[n++], 700, "UKKO_CLUSTER_KEYRING_PATH=%s", keyring);
    snprintf(e[n++], 700, "UKKO_LOG_FORMAT=text");
    char log[600];
    snprintf(log, sizeof(log), "%s/node-%s.log", em.dir, ips[i]);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *env[80];
        size_t k = 0;
        for (char **v = environ; *v && k < 50; v++)
            if (strncmp(*v, "UKKO_", 5) && strncmp(*v, "KUBERNETES_", 11) &&
                strncmp(*v, "HOSTNAME=", 9))
                env[k++] = *v;
        for (size_t j = 0; j < n; j++)
            env[k++] = e[j];
        env[k] = NULL;
        execle(UKKO_BIN, UKKO_BIN, "run", (char *)NULL, env);
        _exit(127);
    }
    pids[i] = pid;
}

static void node_log(int i, char *out, size_t outlen)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/node-%s.log", em.dir, ips[i]);
    log_tail(path, out, outlen);
}

static bool log_has(int i, const char *what)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/node-%s.log", em.dir, ips[i]);
    char *text = ut_slurp(path, NULL);
    bool has = text && strstr(text, what);
    free(text);
    return has;
}

static void start_api_only(void)
{
    /* A pod deleted with a grace period keeps its deletionTimestamp here
     * until the test removes it: nothing ends it by itself. */
    const char *args[] = {"--termination-delay-ms", "600000", NULL};
    cr_assert_eq(ut_emulator_start(&em, NULL, args), 0, "the emulator did not start");
    write_keyring();
}

/* --------------------------------------------------------------- tests */

TestSuite(bootstrap, .fini = teardown);

/* The number of GET requests of the pods (lists and watches) the emulator
 * saw since its counts were last reset. */
static int pod_requests(void)
{
    char *out = NULL;
    emu_ctl((const char *[]){"requests", NULL}, &out);
    cJSON *j = cJSON_Parse(out ? out : "");
    free(out);
    int n = 0;
    cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "recent"))
    {
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r, "path"));
        if (p && strstr(p, "/pods"))
            n++;
    }
    cJSON_Delete(j);
    return n;
}

static void statefulset_forms_one_cluster(int n, int first)
{
    start_statefulset(n, first);
    char seen[1024], tail[3200], path[600];
    bool ok = wait_one_cluster(n, 60000, seen, sizeof(seen));
    if (!ok) {
        for (int i = 0; i < n; i++) {
            char pod[32];
            snprintf(pod, sizeof(pod), "ukko-%d", i);
            pod_log_path(pod, path, sizeof(path));
            log_tail(path, tail, sizeof(tail));
            fprintf(stderr, "---- log of %s:\n%s\n", pod, tail);
        }
        listeners(tail, sizeof(tail));
        fprintf(stderr, "---- listening on :8558:\n%s\n", tail);
    }
    cr_assert(ok, "%d pods of a StatefulSet make one cluster, every node ready; last seen: %s "
                  "(logs above)",
              n, seen);
    /* The lowest formed it; no other node formed one. */
    int formed = 0;
    for (int i = 0; i < n; i++) {
        char pod[32];
        snprintf(pod, sizeof(pod), "ukko-%d", i);
        pod_log_path(pod, path, sizeof(path));
        char *text = ut_slurp(path, NULL);
        if (text && strstr(text, "forming a new cluster"))
            formed++;
        cr_expect(i == 0 || !text || !strstr(text, "forming a new cluster"),
                  "only the lowest address forms the cluster, not %s", pod);
        free(text);
    }
    cr_expect_eq(formed, 1, "exactly one node formed a cluster");
    /* Members ask the API nothing any more: the counts stay still. */
    emu_ctl((const char *[]){"reset-requests", NULL}, NULL);
    int64_t end = ut_now_ms() + 1500;
    while (ut_now_ms() < end) {
        cr_assert_eq(pod_requests(), 0,
                     "a member neither lists nor watches the pods once it has joined");
        sleep_ms(250);
    }
}

Test(bootstrap, three_pods_make_one_cluster_and_then_leave_the_api_alone, .timeout = 180)
{
    statefulset_forms_one_cluster(3, 140);
}

Test(bootstrap, five_pods_make_one_cluster, .timeout = 180)
{
    statefulset_forms_one_cluster(5, 140);
}

Test(bootstrap, a_pod_started_later_joins_the_cluster, .timeout = 180)
{
    start_statefulset(3, 140);
    char seen[1024];
    cr_assert(wait_one_cluster(3, 60000, seen, sizeof(seen)), "3 form: %s", seen);
    cJSON *j = members_of(ips[0]);
    char leader[128];
    snprintf(leader, sizeof(leader), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "leader")));
    cJSON_Delete(j);
    scale(4);
    snprintf(ips[3], sizeof(ips[3]), "127.0.0.143");
    char path[600], tail[3200];
    bool ok = wait_one_cluster(4, 60000, seen, sizeof(seen));
    pod_log_path("ukko-3", path, sizeof(path));
    log_tail(path, tail, sizeof(tail));
    cr_assert(ok, "the 4th pod joins the cluster: %s\nits log:\n%s", seen, tail);
    char *text = ut_slurp(path, NULL);
    cr_expect(text && strstr(text, "joining the existing cluster"),
              "it joins the existing cluster:\n%s", tail);
    cr_expect(text && !strstr(text, "forming a new cluster"), "it never forms its own:\n%s", tail);
    free(text);
    j = members_of(ips[3]);
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "leader")), leader,
                     "same cluster, same leader");
    cJSON_Delete(j);
}

/* The exit code the kubelet recorded for a pod being deleted ("" until its
 * process ended), from its container status. */
static int terminated_exit_code(const char *pod)
{
    char path[300], *out = NULL;
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/pods/%s", pod);
    const char *args[] = {"request", "GET", path, NULL};
    if (ut_emulator_ctl(&em, args, &out) != 0) {
        free(out);
        return -2; /* gone */
    }
    cJSON *j = cJSON_Parse(out ? out : "");
    free(out);
    cJSON *cs = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "status"), "containerStatuses"), 0);
    cJSON *code = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "state"), "terminated"), "exitCode");
    int rc = cJSON_IsNumber(code) ? code->valueint : -1;
    cJSON_Delete(j);
    return rc;
}

Test(bootstrap, sigterm_leaves_the_others_list_it_removed_and_stay_ready, .timeout = 180)
{
    start_statefulset(3, 140);
    char seen[1024];
    cr_assert(wait_one_cluster(3, 60000, seen, sizeof(seen)), "3 form: %s", seen);
    scale(2); /* ukko-2 (127.0.0.142) gets SIGTERM */
    int code = -1;
    int64_t end = ut_now_ms() + 60000;
    while (ut_now_ms() < end && (code = terminated_exit_code("ukko-2")) == -1)
        sleep_ms(100);
    char path[600], tail[3200];
    pod_log_path("ukko-2", path, sizeof(path));
    log_tail(path, tail, sizeof(tail));
    cr_expect(code == 0 || code == -2, "the leaving node exits 0 (got %d):\n%s", code, tail);
    cr_expect(strstr(tail, "left the cluster") != NULL, "it left in order:\n%s", tail);
    cr_assert(wait_one_cluster(2, 60000, seen, sizeof(seen)),
              "the other two are one cluster of 2, both ready: %s", seen);
    for (int i = 0; i < 2; i++) {
        char pod[32];
        snprintf(pod, sizeof(pod), "ukko-%d", i);
        pod_log_path(pod, path, sizeof(path));
        char *text = ut_slurp(path, NULL);
        cr_expect(text && strstr(text, "member ukko://ukko@127.0.0.142:7355 is Removed"),
                  "%s lists the leaver Removed", pod);
        cr_expect(text && !strstr(text, "127.0.0.142:7355 is Down") &&
                      !strstr(text, "127.0.0.142:7355 is suspected"),
                  "%s never takes it for failed", pod);
        free(text);
    }
}

Test(bootstrap, a_terminating_pod_is_no_contact_point, .timeout = 120)
{
    start_api_only();
    /* The lowest address (ips[2]) belongs to a pod being deleted. Its
     * process runs and answers; were it a contact point, nobody could form
     * (it would be the lowest, and it never forms: it sees only itself). */
    snprintf(ips[0], sizeof(ips[0]), "127.0.0.151");
    snprintf(ips[1], sizeof(ips[1]), "127.0.0.152");
    snprintf(ips[2], sizeof(ips[2]), "127.0.0.150");
    char token[600];
    snprintf(token, sizeof(token), "%s/token", em.dir);
    spawn(2, "ukko-0", token,
          (const char *[]){"UKKO_DISCOVERY_KUBERNETES_API_POD_LABEL_SELECTOR=app=nobody", NULL});
    post_pod("ukko-0", ips[2], false);
    emu_ctl((const char *[]){"request", "DELETE", "/api/v1/namespaces/default/pods/ukko-0",
                             "{\"gracePeriodSeconds\": 30}", NULL},
            NULL);
    const char *quick[] = {"UKKO_CLUSTER_BOOTSTRAP_STABLE_MARGIN=1s", NULL};
    for (int i = 0; i < 2; i++) {
        char pod[32];
        snprintf(pod, sizeof(pod), "ukko-%d", i + 1);
        post_pod(pod, ips[i], false);
        spawn(i, pod, token, quick);
    }
    char seen[1024], tail[3200];
    bool ok = wait_one_cluster(2, 60000, seen, sizeof(seen));
    node_log(0, tail, sizeof(tail));
    cr_assert(ok, "the two pods not being deleted form a cluster: %s\nlog of %s:\n%s", seen,
              ips[0], tail);
    char view[1024];
    view_of(ips[0], view, sizeof(view));
    cr_expect(!strstr(view, ips[2]), "the terminating pod's node is not in it: %s", view);
    cr_expect_neq(ut_http(ips[2], 8558, "GET", "/ready", NULL, 1000), 200, "and it is not ready");
}

static bool cold_known;
static int restarts;

static void restart_cold(int n)
{
    char token[600];
    snprintf(token, sizeof(token), "%s/token", em.dir);
    const char *margin[] = {"UKKO_CLUSTER_BOOTSTRAP_STABLE_MARGIN=1s", NULL};
    for (int i = 0; i < n; i++) {
        int status;
        if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
            char tail[3200], pod[32];
            node_log(i, tail, sizeof(tail));
            fprintf(stderr, "node %s exited (%d); restarting it. Its log:\n%s\n", ips[i],
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail);
            snprintf(pod, sizeof(pod), "ukko-%d", i);
            restarts++;
            spawn(i, pod, token, cold_known ? NULL : margin);
        }
    }
}

/* One cold start of n pods whose processes and pod objects appear in a
 * random order with random delays; then checks that they made one
 * cluster, and clears everything for the next. */
static void cold_start(int round, int n, bool expected_known, unsigned *seed)
{
    char token[600];
    snprintf(token, sizeof(token), "%s/token", em.dir);
    int order[MAXP];
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rand_r(seed) % (unsigned)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    if (expected_known) {
        char body[64];
        snprintf(body, sizeof(body), "{\"spec\":{\"replicas\":%d}}", n);
        emu_ctl((const char *[]){"request", "PATCH",
                                 "/apis/apps/v1/namespaces/default/statefulsets/ukko", body,
                                 "--content-type", "application/merge-patch+json", NULL},
                NULL);
    }
    cold_known = expected_known;
    restart_exited = restart_cold;
    /* Without the expected size the stable margin decides: short, so that
     * 20 rounds stay quick, and the rule must still hold. */
    const char *margin[] = {"UKKO_CLUSTER_BOOTSTRAP_STABLE_MARGIN=1s", NULL};
    for (int k = 0; k < n; k++) {
        int i = order[k];
        char pod[32];
        snprintf(pod, sizeof(pod), "ukko-%d", i);
        sleep_ms((int)(rand_r(seed) % 300));
        bool pod_first = rand_r(seed) & 1;
        if (pod_first)
            post_pod(pod, ips[i], expected_known);
        spawn(i, pod, token, expected_known ? NULL : margin);
        if (!pod_first) {
            sleep_ms((int)(rand_r(seed) % 200));
            post_pod(pod, ips[i], expected_known);
        }
    }
    char seen[1024], tail[3200];
    bool ok = wait_one_cluster(n, 60000, seen, sizeof(seen));
    if (!ok) {
        for (int i = 0; i < n; i++) {
            node_log(i, tail, sizeof(tail));
            fprintf(stderr, "---- log of %s:\n%s\n", ips[i], tail);
        }
        listeners(tail, sizeof(tail));
        fprintf(stderr, "---- listening on :8558:\n%s\n", tail);
    }
    node_log(0, tail, sizeof(tail));
    cr_assert(ok, "round %d (%d pods, expected size %s): one cluster, all ready; last seen: %s\n"
                  "log of %s:\n%s",
              round, n, expected_known ? "known" : "not known", seen, ips[0], tail);
    kill_all();
    for (int i = 0; i < n; i++) {
        char path[300];
        snprintf(path, sizeof(path), "/api/v1/namespaces/default/pods/ukko-%d", i);
        emu_ctl((const char *[]){"request", "DELETE", path, "{\"gracePeriodSeconds\": 0}", NULL},
                NULL);
        char log[600];
        snprintf(log, sizeof(log), "%s/node-%s.log", em.dir, ips[i]);
        unlink(log);
    }
}

Test(bootstrap, twenty_cold_starts_in_random_order_never_make_two_clusters, .timeout = 600)
{
    start_api_only();
    emu_ctl((const char *[]){"request", "POST", "/apis/apps/v1/namespaces/default/statefulsets",
                             "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":"
                             "{\"name\":\"ukko\"},\"spec\":{\"replicas\":3,\"serviceName\":\"ukko\","
                             "\"selector\":{\"matchLabels\":{\"app\":\"ukko\"}},\"template\":"
                             "{\"metadata\":{\"labels\":{\"app\":\"ukko\"}},\"spec\":"
                             "{\"containers\":[{\"name\":\"ukko\",\"image\":\"ukko\"}]}}}}",
                             NULL},
            NULL);
    for (int i = 0; i < MAXP; i++)
        snprintf(ips[i], sizeof(ips[i]), "127.0.0.%d", 160 + i);
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "twenty cold starts: seed %u\n", seed);
    for (int round = 0; round < 20; round++) {
        int n = round % 2 ? 5 : 3;
        cold_start(round, n, round % 4 < 2, &seed);
    }
}

Test(bootstrap, api_unreachable_or_forbidden_keeps_trying_and_never_ready_alone, .timeout = 120)
{
    start_api_only();
    for (int i = 0; i < 2; i++)
        snprintf(ips[i], sizeof(ips[i]), "127.0.0.%d", 170 + i);
    /* Node 0: an API server port where nothing listens. */
    char token[600];
    snprintf(token, sizeof(token), "%s/token", em.dir);
    spawn(0, "ukko-0", token, (const char *[]){"KUBERNETES_SERVICE_PORT=1", NULL});
    /* Node 1: a token with no RBAC (403), in a file that is fixed later. */
    char mine[600], *forbidden = NULL;
    snprintf(mine, sizeof(mine), "%s/token-of-node-1", em.dir);
    char fpath[600];
    snprintf(fpath, sizeof(fpath), "%s/token-forbidden", em.dir);
    forbidden = ut_slurp(fpath, NULL);
    cr_assert_not_null(forbidden);
    cr_assert_eq(ut_write_file(mine, forbidden), 0);
    free(forbidden);
    post_pod("ukko-1", ips[1], false);
    spawn(1, "ukko-1", mine, (const char *[]){"UKKO_CLUSTER_BOOTSTRAP_REQUIRED_CONTACT_POINT_NR=1",
                                             "UKKO_CLUSTER_BOOTSTRAP_STABLE_MARGIN=500ms", NULL});
    /* Both keep trying and say why; neither becomes ready meanwhile. */
    int64_t end = ut_now_ms() + 60000;
    bool said0 = false, said1 = false;
    while (ut_now_ms() < end && !(said0 && said1)) {
        cr_assert_neq(ut_http(ips[0], 8558, "GET", "/ready", NULL, 1000), 200,
                      "no API: never ready alone");
        cr_assert_neq(ut_http(ips[1], 8558, "GET", "/ready", NULL, 1000), 200,
                      "403: never ready alone");
        said0 = log_has(0, "cannot connect to the API server") && log_has(0, "retrying");
        said1 = log_has(1, "403 Forbidden") && log_has(1, "retrying");
        sleep_ms(200);
    }
    char tail[3200];
    node_log(0, tail, sizeof(tail));
    cr_expect(said0, "the log says the API server cannot be reached, and retries:\n%s", tail);
    node_log(1, tail, sizeof(tail));
    cr_expect(said1, "the log names the 403 (RBAC), and retries:\n%s", tail);
    /* The Role is fixed (here: the token): node 1 finds itself and, as
     * required-contact-point-nr 1 allows, forms. */
    char *good = ut_slurp(token, NULL);
    cr_assert_eq(ut_write_file(mine, good), 0);
    free(good);
    cr_assert(ut_wait_status(ips[1], 8558, "/ready", 200, 60000),
              "once the API answers, the node that kept trying becomes a member");
    cr_expect_neq(ut_http(ips[0], 8558, "GET", "/ready", NULL, 1000), 200,
                  "the one without an API is still not ready");
}

/* A raw PUT to a node's management server: the status, the body in out. */
static int put(const char *ip, const char *path, const char *token, const char *form,
               ukko_buf_t *out)
{
    int fd = ut_connect(ip, 8558, 5000);
    cr_assert_geq(fd, 0, "connect to %s", ip);
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "PUT %s HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Type: "
                     "application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     path, ip, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", strlen(form), form);
    cr_assert_eq(ut_send_all(fd, req, (size_t)n), 0);
    int st = ut_read_response(fd, out, 30000);
    close(fd);
    return st;
}

/* `ukko CMD args` as an operator runs it; its exit code, output in out. */
static int ukko_cli(const char *args, ukko_buf_t *out)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "env -u UKKO_MANAGEMENT_TOKEN_PATH %s %s 2>&1", UKKO_BIN, args);
    ukko_buf_reset(out);
    return ut_run(cmd, NULL, out);
}

Test(bootstrap, leave_and_down_are_operations_that_need_the_token, .timeout = 120)
{
    start_api_only();
    char tokfile[600], points[200], tokenv[700];
    snprintf(tokfile, sizeof(tokfile), "%s/mgmt-token", em.dir);
    cr_assert_eq(ut_write_file(tokfile, "s3cret-of-the-operators\n"), 0);
    snprintf(tokenv, sizeof(tokenv), "UKKO_MANAGEMENT_TOKEN_PATH=%s", tokfile);
    for (int i = 0; i < 3; i++)
        snprintf(ips[i], sizeof(ips[i]), "127.0.0.%d", 190 + i);
    snprintf(points, sizeof(points),
             "UKKO_DISCOVERY_STATIC_CONTACT_POINTS=%s:8558,%s:8558,%s:8558", ips[0], ips[1],
             ips[2]);
    char token[600];
    snprintf(token, sizeof(token), "%s/token", em.dir);
    for (int i = 0; i < 3; i++) {
        char pod[32];
        snprintf(pod, sizeof(pod), "op-%d", i);
        spawn(i, pod, token,
              (const char *[]){"UKKO_DISCOVERY_METHOD=static", points, tokenv,
                               "UKKO_CLUSTER_BOOTSTRAP_EXPECTED_CONTACT_POINT_NR=3",
                               /* the downed node is looked at, not restarted */
                               "UKKO_CLUSTER_RUN_COORDINATED_SHUTDOWN_WHEN_DOWN=false", NULL});
    }
    char seen[1024];
    cr_assert(wait_one_cluster(3, 60000, seen, sizeof(seen)), "3 form: %s", seen);

    ukko_buf_t out;
    ukko_buf_init(&out, 1 << 20);
    char args[900], url[64];
    snprintf(url, sizeof(url), "http://%s:8558", ips[0]);
    snprintf(args, sizeof(args), "members --url %s", url);
    cr_expect_eq(ukko_cli(args, &out), 0, "ukko members: %s", out.data);
    cr_expect(strstr(out.data, "ukko://ukko@127.0.0.192:7355") && strstr(out.data, "Up"),
              "lists the members: %s", out.data);

    /* Without the token, or with a wrong one: 401, and nothing happens. */
    snprintf(args, sizeof(args), "leave %s:7355 --url %s", ips[2], url);
    cr_expect_eq(ukko_cli(args, &out), 1, "refused without a token: %s", out.data);
    cr_expect(strstr(out.data, "401") != NULL, "says 401: %s", out.data);
    cr_expect_eq(put(ips[0], "/cluster/members/127.0.0.192:7355", "guess", "operation=Leave",
                     &out),
                 401);
    cr_expect_eq(put(ips[0], "/cluster/members/127.0.0.192:7355", "s3cret-of-the-operators",
                     "operation=Reboot", &out),
                 400, "an operation Pekko does not have: 400");
    cr_expect_eq(put(ips[0], "/cluster/members/127.0.0.199:7355", "s3cret-of-the-operators",
                     "operation=Down", &out),
                 404, "no such member: 404");
    cr_expect(strstr(out.data, "not found") != NULL, "%s", out.data);

    /* Down of node 1 through node 0, with the token file. */
    snprintf(args, sizeof(args), "down ukko://ukko@%s:7355 --url %s --token-file %s", ips[1], url,
             tokfile);
    cr_expect_eq(ukko_cli(args, &out), 0, "ukko down: %s", out.data);
    cr_expect(strstr(out.data, "Downing ukko://ukko@127.0.0.191:7355") != NULL, "%s", out.data);
    int64_t end = ut_now_ms() + 60000;
    char view[1024] = "";
    while (ut_now_ms() < end) {
        view_of(ips[2], view, sizeof(view));
        if (strstr(view, "127.0.0.191:7355 Down") || !strstr(view, "127.0.0.191"))
            break;
        sleep_ms(100);
    }
    cr_expect(strstr(view, "127.0.0.191:7355 Down") || !strstr(view, "127.0.0.191"),
              "node 2 holds node 1 Down: %s", view);
    cr_expect(ut_wait_status(ips[1], 8558, "/ready", 500, 60000),
              "the downed node learns it and is not ready");

    /* Leave of node 2 through node 0: it leaves, and its process ends well. */
    snprintf(args, sizeof(args), "leave %s:7355 --url %s --token-file %s", ips[2], url, tokfile);
    cr_expect_eq(ukko_cli(args, &out), 0, "ukko leave: %s", out.data);
    cr_expect(strstr(out.data, "Leaving ukko://ukko@127.0.0.192:7355") != NULL, "%s", out.data);
    int code = ut_wait_exit(pids[2], 60000);
    pids[2] = 0;
    char tail[3200];
    node_log(2, tail, sizeof(tail));
    cr_expect_eq(code, 0, "the node asked to leave exits 0:\n%s", tail);
    cr_expect(strstr(tail, "left the cluster") != NULL, "after leaving in order:\n%s", tail);
    end = ut_now_ms() + 60000;
    while (ut_now_ms() < end) {
        view_of(ips[0], view, sizeof(view));
        if (!strstr(view, "127.0.0.192"))
            break;
        sleep_ms(100);
    }
    cr_expect(!strstr(view, "127.0.0.192"), "node 0 has removed it: %s", view);
    cr_expect(ready(ips[0]), "and stays ready");
    ukko_buf_destroy(&out);
}
