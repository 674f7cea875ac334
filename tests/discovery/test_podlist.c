/* test_podlist.c: the pod-list parser (discovery/podlist.c) against our own
 * fixtures (tests/discovery/fixtures/), the recorded responses of real API
 * servers (../shared/k8s-fixtures/, when present beside the checkout), the
 * emulator's fixtures, and hand-made hostile bodies. */
#include "discovery.h"
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWN UKKO_SOURCE_DIR "/tests/discovery/fixtures/"

/* "pod@host:port,..." (authority form: IPv6 in brackets). */
static void render(const ukko_contact_points_t *cps, bool with_pod, char *out, size_t outlen)
{
    size_t j = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cps->n && j < outlen; i++) {
        char a[128];
        ukko_discovery_authority(&cps->v[i], a, sizeof(a));
        int w = snprintf(out + j, outlen - j, "%s%s%s%s", i ? "," : "",
                         with_pod ? cps->v[i].pod : "", with_pod ? "@" : "", a);
        if (w > 0)
            j += (size_t)w;
    }
}

typedef struct parsed {
    int rc;
    char points[4096];
    char why[256];
    ukko_podlist_stats_t st;
} parsed_t;

static parsed_t parse_text(const char *text, size_t len, const char *port_name,
                           const char *container, int default_port, bool with_pod)
{
    parsed_t p;
    memset(&p, 0, sizeof(p));
    ukko_podlist_filter_t f = {port_name, container, default_port};
    ukko_contact_points_t cps = {0};
    p.rc = ukko_discovery_podlist_parse(text, len, &f, &cps, &p.st, p.why, sizeof(p.why));
    render(&cps, with_pod, p.points, sizeof(p.points));
    if (p.rc < 0)
        cr_expect_eq(cps.n, 0, "a failed parse must leave no points, got %zu", cps.n);
    ukko_discovery_points_destroy(&cps);
    return p;
}

static parsed_t parse_file(const char *path, const char *port_name, const char *container,
                           int default_port, bool with_pod)
{
    size_t len = 0;
    char *text = ut_slurp(path, &len);
    cr_assert_not_null(text, "cannot read the fixture %s", path);
    /* Copy into an exact-size heap block: no NUL after it, so ASan catches a
     * parser that reads past the length it was given. */
    char *exact = malloc(len ? len : 1);
    memcpy(exact, text, len);
    free(text);
    parsed_t p = parse_text(exact, len, port_name, container, default_port, with_pod);
    free(exact);
    return p;
}

/* ------------------------------------------------------- our fixtures */

Test(podlist, keeps_running_pods_with_ip_and_named_port, .timeout = 10)
{
    parsed_t p = parse_file(OWN "shop-pods.json", "management", NULL, 7626, true);
    cr_assert_eq(p.rc, 0, "parse failed: %s", p.why);
    cr_expect_str_eq(p.points, "shop-0@10.1.0.10:8558,shop-1@10.1.0.11:9101,shop-5@10.1.0.15:7626",
                     "expected the Running pods with an IP (named port, else the default port)");
    cr_expect_eq(p.st.pods, 7);
    cr_expect_eq(p.st.kept, 3);
    cr_expect_eq(p.st.terminating, 1, "shop-2 has a deletionTimestamp");
    cr_expect_eq(p.st.not_running, 2, "shop-3 Failed and shop-4 Pending");
    cr_expect_eq(p.st.bad, 1, "shop-6's podIP is not an IP address");
    cr_expect_eq(p.st.default_port, 1, "shop-5 has no port named management");
}

Test(podlist, without_port_name_every_point_gets_the_default_port, .timeout = 10)
{
    parsed_t p = parse_file(OWN "shop-pods.json", NULL, NULL, 7626, false);
    cr_assert_eq(p.rc, 0, "parse failed: %s", p.why);
    cr_expect_str_eq(p.points, "10.1.0.10:7626,10.1.0.11:7626,10.1.0.15:7626");
}

Test(podlist, container_filter_drops_pods_whose_container_waits_or_is_absent, .timeout = 10)
{
    parsed_t p = parse_file(OWN "shop-sidecar.json", "management", "envoy", 8558, true);
    cr_assert_eq(p.rc, 0, "parse failed: %s", p.why);
    cr_expect_str_eq(p.points, "shop-b@10.2.0.2:8558,shop-c@10.2.0.3:8558",
                     "shop-a's envoy is waiting (CrashLoopBackOff): it must be left out");
    cr_expect_eq(p.st.waiting, 1);

    p = parse_file(OWN "shop-sidecar.json", "management", "shop", 8558, true);
    cr_assert_eq(p.rc, 0);
    cr_expect_str_eq(p.points, "shop-a@10.2.0.1:8558,shop-b@10.2.0.2:8558",
                     "shop-c has no container named shop: it must be left out");

    p = parse_file(OWN "shop-sidecar.json", "management", NULL, 8558, false);
    cr_expect_str_eq(p.points, "10.2.0.1:8558,10.2.0.2:8558,10.2.0.3:8558",
                     "without a container filter every Running pod counts");
}

Test(podlist, ipv6_pod_ips_are_kept_and_sorted_after_ipv4, .timeout = 10)
{
    parsed_t p = parse_file(OWN "shop-ipv6.json", "management", NULL, 8558, true);
    cr_assert_eq(p.rc, 0, "parse failed: %s", p.why);
    cr_expect_str_eq(p.points,
                     "shop-v4@10.3.0.2:8558,shop-v6-0@[fd00:10:244::a]:8558,"
                     "shop-v6-1@[fd00:10:244::b]:8558",
                     "IPv6 hosts in brackets in the authority, after IPv4 ones");
}

Test(podlist, empty_and_null_item_lists_are_empty_sets, .timeout = 10)
{
    parsed_t p = parse_file(OWN "empty.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, 0, "an empty list is a valid answer: %s", p.why);
    cr_expect_str_eq(p.points, "");
    p = parse_file(OWN "null-items.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, 0, "\"items\": null is an empty list: %s", p.why);
}

Test(podlist, a_status_object_is_not_a_pod_list, .timeout = 10)
{
    parsed_t p = parse_file(OWN "status-403.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, UKKO_EPROTO);
    cr_expect(strstr(p.why, "Status") != NULL, "why should name the kind, got \"%s\"", p.why);
}

Test(podlist, truncated_body_says_so, .timeout = 10)
{
    parsed_t p = parse_file(OWN "truncated.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, UKKO_EPROTO);
    cr_expect(strstr(p.why, "truncated") != NULL, "why should say truncated, got \"%s\"", p.why);
}

Test(podlist, malformed_and_trailing_garbage_are_rejected, .timeout = 10)
{
    parsed_t p = parse_file(OWN "malformed.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, UKKO_EPROTO, "a bare word as a value must be rejected");
    cr_expect(strstr(p.why, "malformed JSON at byte") != NULL, "got \"%s\"", p.why);
    p = parse_file(OWN "trailing-garbage.json", "management", NULL, 8558, false);
    cr_expect_eq(p.rc, UKKO_EPROTO, "bytes after the object must be rejected");
}

/* ------------------------------------------------------ hostile bodies */

static parsed_t parse_str(const char *s)
{
    return parse_text(s, strlen(s), "management", NULL, 8558, true);
}

Test(podlist, rejects_what_is_not_a_pod_list, .timeout = 10)
{
    const char *bad[] = {
        "",
        "   ",
        "[]",
        "null",
        "{\"kind\":\"PodList\"}",
        "{\"kind\":\"PodList\",\"items\":{}}",
        "{\"kind\":\"PodList\",\"items\":\"x\"}",
        "{\"kind\":\"Pod\",\"items\":[]}",
        "{\"kind\":7,\"items\":[]}",
        "{\"items\":[}",
        "{\"items\":[1,]}",
        "{\"items\":[] \"kind\":\"PodList\"}",
        "{\"items\":[]}}",
        "{\"items\" []}",
        "{items:[]}",
        "{\"items\":[{\"a\":tru}]}",
        "{\"items\":[{\"a\":\"\\\"}]}",
        "{\"items\":[]}\0{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        if (i == sizeof(bad) / sizeof(bad[0]) - 1)
            len = sizeof("{\"items\":[]}\0{}") - 1;
        parsed_t p = parse_text(bad[i], len, "management", NULL, 8558, false);
        cr_expect_lt(p.rc, 0, "body %zu (%s) must be rejected", i, bad[i]);
        cr_expect_neq(p.why[0], '\0', "body %zu must come with a reason", i);
    }
}

Test(podlist, odd_items_are_skipped_not_fatal, .timeout = 10)
{
    parsed_t p = parse_str(
        "{\"kind\":\"PodList\",\"items\":[1,\"x\",null,[],{},"
        "{\"metadata\":{\"name\":7},\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\"}},"
        "{\"metadata\":{\"name\":\"p\"},\"status\":{\"phase\":\"Running\",\"podIP\":7}},"
        "{\"metadata\":{\"name\":\"q\"},\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.9\"},"
        "\"spec\":{\"containers\":[{\"ports\":[{\"name\":\"management\",\"containerPort\":70000},"
        "{\"name\":\"management\",\"containerPort\":1.5},{\"name\":\"management\"}]}]}},"
        "{\"metadata\":{\"name\":\"r \\\"quoted\\\" \\\\\",\"deletionTimestamp\":null},"
        "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.2\"},"
        "\"spec\":{\"containers\":{\"not\":\"a list\"}}}]}");
    cr_assert_eq(p.rc, 0, "odd items must not fail the list: %s", p.why);
    cr_expect_str_eq(p.points, "r \"quoted\" \\@10.0.0.2:8558,q@10.0.0.9:8558",
                     "bad ports fall back to the default; a null deletionTimestamp is no deletion");
    cr_expect_eq(p.st.pods, 9);
    cr_expect_eq(p.st.kept, 2);
}

Test(podlist, deep_nesting_is_an_error_not_a_crash, .timeout = 10)
{
    size_t depth = 100000;
    char *s = malloc(depth * 2 + 64);
    size_t j = (size_t)sprintf(s, "{\"items\":[");
    for (size_t i = 0; i < depth; i++)
        s[j++] = '[';
    for (size_t i = 0; i < depth; i++)
        s[j++] = ']';
    j += (size_t)sprintf(s + j, "]}");
    parsed_t p = parse_text(s, j, "management", NULL, 8558, false);
    cr_expect_lt(p.rc, 0, "an item nested 100000 deep must be refused (cJSON's nesting cap)");
    free(s);
}

/* A hostile body of escapes: parsing must stay linear, since it runs on the
 * loop thread (a quadratic scan took minutes for a few MB; .timeout fails it). */
Test(podlist, a_string_of_escapes_parses_in_linear_time, .timeout = 10)
{
    size_t n = 4 * 1024 * 1024;
    char *s = malloc(2 * n + 128);
    size_t j = (size_t)sprintf(s, "{\"kind\":\"PodList\",\"x\":\"");
    for (size_t i = 0; i < n; i++) {
        s[j++] = '\\';
        s[j++] = (i % 1000000) ? 'n' : '"';
    }
    j += (size_t)sprintf(s + j, "\",\"items\":[]}");
    parsed_t p = parse_text(s, j, "management", NULL, 8558, false);
    cr_expect_eq(p.rc, 0, "8 MB of escapes in one string is still a valid empty list: %s", p.why);
    /* And unterminated: the same bytes without the closing quote. */
    p = parse_text(s, j - 15, "management", NULL, 8558, false);
    cr_expect_lt(p.rc, 0, "an unterminated string is an error");
    free(s);
}

Test(podlist, a_unicode_escape_needs_four_hex_digits, .timeout = 10)
{
    const char bad[] = "{\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"a\\ubx0e9\"}}]}";
    parsed_t p = parse_text(bad, sizeof(bad) - 1, "management", NULL, 8558, false);
    cr_expect_lt(p.rc, 0, "\\u followed by non-hex is not JSON (cJSON would read U+0000)");
    const char good[] = "{\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"a\\u00e9\"}}]}";
    p = parse_text(good, sizeof(good) - 1, "management", NULL, 8558, false);
    cr_expect_eq(p.rc, 0, "a proper \\u escape parses: %s", p.why);
}

Test(podlist, long_pod_name_or_ip_is_skipped, .timeout = 10)
{
    char name[400];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"items\":[{\"metadata\":{\"name\":\"%s\"},\"status\":{\"phase\":\"Running\","
             "\"podIP\":\"10.0.0.1\"}},{\"metadata\":{\"name\":\"x\"},\"status\":{\"phase\":"
             "\"Running\",\"podIP\":\"1111:2222:3333:4444:5555:6666:7777:8888:9999\"}}]}",
             name);
    parsed_t p = parse_str(body);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_eq(p.st.bad, 2, "a 399-byte name and a 9-group IPv6 address are both invalid");
    cr_expect_str_eq(p.points, "");
}

/* --------------------------------------- the recorded responses (shared) */

static const char *shared_or_skip(void)
{
    const char *dir = ut_shared_fixtures();
    if (!dir)
        cr_skip("the recorded fixtures are not beside the checkout (%s): skipped",
                UKKO_SOURCE_DIR "/../shared/k8s-fixtures");
    return dir;
}

static parsed_t parse_shared(const char *file, const char *port, const char *container)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", shared_or_skip(), file);
    return parse_file(path, port, container, 8558, false);
}

Test(shared_fixtures, pods_json_with_port_name_management, .timeout = 10)
{
    parsed_t p = parse_shared("pods.json", "management", NULL);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "172.17.0.4:10001,172.17.0.6:10001",
                     "the terminating pod (172.17.0.7) and the succeeded job pod (172.17.0.47) "
                     "must be left out");
}

Test(shared_fixtures, pods_json_without_port_name, .timeout = 10)
{
    parsed_t p = parse_shared("pods.json", NULL, NULL);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "172.17.0.4:8558,172.17.0.6:8558");
}

Test(shared_fixtures, multi_container_pod_without_filter, .timeout = 10)
{
    parsed_t p = parse_shared("multi-container-pod.json", "management", NULL);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "10.8.7.9:8558");
}

Test(shared_fixtures, multi_container_pod_with_container_filters, .timeout = 10)
{
    parsed_t p = parse_shared("multi-container-pod.json", "management", "user-function");
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "10.8.7.9:8558", "user-function is running");
    p = parse_shared("multi-container-pod.json", "management", "cloudstate-sidecar");
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "", "cloudstate-sidecar is waiting: no contact point");
}

Test(shared_fixtures, multi_container_pod_pending_has_no_ip, .timeout = 10)
{
    parsed_t p = parse_shared("multi-container-pod-pending.json", "management", NULL);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.points, "");
    cr_expect_eq(p.st.no_ip, 1);
}

/* --------------------------------------------- the emulator's fixtures */

Test(emulator_fixtures, every_expectation_of_expected_json, .timeout = 20)
{
    const char *dir = UKKO_SOURCE_DIR "/tests/emulator/fixtures";
    char path[1024];
    snprintf(path, sizeof(path), "%s/expected.json", dir);
    char *text = ut_slurp(path, NULL);
    if (!text)
        cr_skip("%s is absent: skipped", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root, "%s is not JSON", path);
    int cases = 0;
    for (const cJSON *file = root->child; file; file = file->next) {
        if (!cJSON_IsArray(file))
            continue;
        const cJSON *c;
        cJSON_ArrayForEach(c, file)
        {
            const cJSON *pn = cJSON_GetObjectItem(c, "port_name");
            const cJSON *cn = cJSON_GetObjectItem(c, "container");
            char fpath[1024], want[2048] = "";
            snprintf(fpath, sizeof(fpath), "%s/%s", dir, file->string);
            const cJSON *cp;
            size_t j = 0;
            cJSON *sorted = cJSON_GetObjectItem(c, "contact_points");
            cJSON_ArrayForEach(cp, sorted)
            {
                j += (size_t)snprintf(want + j, sizeof(want) - j, "%s%s", j ? "," : "",
                                      cp->valuestring);
            }
            parsed_t p = parse_file(fpath, cJSON_IsString(pn) ? pn->valuestring : NULL,
                                    cJSON_IsString(cn) ? cn->valuestring : NULL, 8558, false);
            cr_expect_eq(p.rc, 0, "%s: %s", file->string, p.why);
            cr_expect_str_eq(p.points, want, "%s with port %s, container %s", file->string,
                             cJSON_IsString(pn) ? pn->valuestring : "null",
                             cJSON_IsString(cn) ? cn->valuestring : "null");
            cases++;
        }
    }
    cJSON_Delete(root);
    cr_expect_gt(cases, 0, "expected.json held no cases");
}

/* ------------------------------------------------------- the list's version */

Test(podlist, the_lists_resource_version_is_where_a_watch_starts, .timeout = 10)
{
    const char *body = "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"4711\"},"
                       "\"items\":[]}";
    parsed_t p = parse_text(body, strlen(body), "management", NULL, 8558, false);
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_expect_str_eq(p.st.resource_version, "4711");
    const char *none = "{\"kind\":\"PodList\",\"items\":[]}";
    p = parse_text(none, strlen(none), "management", NULL, 8558, false);
    cr_expect_str_eq(p.st.resource_version, "", "no version: the refresh keeps polling");
}

/* ---------------------------------------------------------- watch events */

static const char *pod_json(const char *name, const char *phase, const char *ip, bool deleting)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"resourceVersion\":\"77\"%s},"
             "\"spec\":{\"containers\":[{\"name\":\"ukko\",\"ports\":[{\"name\":\"management\","
             "\"containerPort\":8600}]}]},\"status\":{\"phase\":\"%s\"%s%s%s}}",
             name, deleting ? ",\"deletionTimestamp\":\"2025-01-01T00:00:00Z\"" : "", phase,
             ip ? ",\"podIP\":\"" : "", ip ? ip : "", ip ? "\"" : "");
    return buf;
}

static int event(const char *type, const char *object, ukko_watch_event_t *ev)
{
    char line[2048];
    snprintf(line, sizeof(line), "{\"type\":\"%s\",\"object\":%s}", type, object);
    ukko_podlist_filter_t f = {"management", NULL, 8558};
    char why[256];
    int rc = ukko_discovery_watch_event_parse(line, strlen(line), &f, ev, why, sizeof(why));
    return rc;
}

Test(watch_event, a_running_pod_with_an_ip_is_a_contact_point, .timeout = 10)
{
    ukko_watch_event_t ev;
    cr_assert_eq(event("ADDED", pod_json("ukko-0", "Running", "10.1.0.7", false), &ev), 0);
    cr_expect_eq(ev.type, UKKO_WATCH_ADDED);
    cr_expect_str_eq(ev.pod, "ukko-0");
    cr_expect_str_eq(ev.resource_version, "77");
    cr_expect(ev.kept);
    cr_expect_str_eq(ev.host, "10.1.0.7");
    cr_expect_eq(ev.port, 8600, "the port named management");
}

Test(watch_event, a_terminating_pending_or_ipless_pod_is_not, .timeout = 10)
{
    ukko_watch_event_t ev;
    cr_assert_eq(event("MODIFIED", pod_json("ukko-1", "Running", "10.1.0.8", true), &ev), 0);
    cr_expect_not(ev.kept, "a pod with a deletionTimestamp is no contact point");
    cr_expect_str_eq(ev.pod, "ukko-1", "but its name says which point to drop");
    cr_assert_eq(event("MODIFIED", pod_json("ukko-1", "Pending", "10.1.0.8", false), &ev), 0);
    cr_expect_not(ev.kept);
    cr_assert_eq(event("ADDED", pod_json("ukko-1", "Running", NULL, false), &ev), 0);
    cr_expect_not(ev.kept);
    cr_assert_eq(event("DELETED", pod_json("ukko-1", "Running", "10.1.0.8", false), &ev), 0);
    cr_expect_eq(ev.type, UKKO_WATCH_DELETED);
    cr_expect_not(ev.kept, "a deleted pod is never kept");
}

Test(watch_event, bookmarks_and_errors, .timeout = 10)
{
    ukko_watch_event_t ev;
    cr_assert_eq(event("BOOKMARK", "{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"90\"}}",
                       &ev),
                 0);
    cr_expect_eq(ev.type, UKKO_WATCH_BOOKMARK);
    cr_expect_str_eq(ev.resource_version, "90");
    cr_assert_eq(event("ERROR",
                       "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Expired\","
                       "\"code\":410}",
                       &ev),
                 0);
    cr_expect_eq(ev.type, UKKO_WATCH_ERROR);
    cr_expect_eq(ev.code, 410);
    cr_assert_eq(event("SOMETHING", "{}", &ev), 0);
    cr_expect_eq(ev.type, UKKO_WATCH_UNKNOWN);
}

Test(watch_event, what_is_not_an_event_is_refused, .timeout = 10)
{
    ukko_podlist_filter_t f = {"management", NULL, 8558};
    ukko_watch_event_t ev;
    char why[256];
    const char *bad[] = {"", "[]", "{\"type\":\"ADDED\"}", "{\"object\":{}}",
                         "{\"type\":1,\"object\":{}}", "{\"type\":\"ADDED\",\"object\":[]}",
                         "{\"type\":\"ADDED\",\"object\":{}} trailing", "{\"type\":\"ADD"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = ukko_discovery_watch_event_parse(bad[i], strlen(bad[i]), &f, &ev, why,
                                                  sizeof(why));
        cr_expect_eq(rc, UKKO_EPROTO, "\"%s\" is no watch event", bad[i]);
        cr_expect_neq(why[0], '\0', "and the reason is given");
    }
}
