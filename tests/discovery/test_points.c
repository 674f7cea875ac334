/* test_points.c: sets of contact points (discovery/points.c): the static
 * list's "host:port" parser, sorting, equality, copies, authority and JSON. */
#include "discovery.h"

#include <criterion/criterion.h>
#include <string.h>

static int parse(const char *const *items, size_t n, ukko_contact_points_t *out, char *why,
                 size_t whylen)
{
    ukko_strlist_t l = {(char **)items, n};
    return ukko_discovery_static_parse(&l, out, why, whylen);
}

Test(points, static_list_parses_and_sorts_by_address, .timeout = 10)
{
    const char *items[] = {"127.0.0.52:8558", "[::1]:8600", "127.0.0.51:8559", "node-a:8558",
                           "127.0.0.51:8558"};
    ukko_contact_points_t cps = {0};
    char why[256] = "";
    cr_assert_eq(parse(items, 5, &cps, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(cps.n, 5);
    const char *want[] = {"127.0.0.51:8558", "127.0.0.51:8559", "127.0.0.52:8558", "[::1]:8600",
                          "node-a:8558"};
    for (size_t i = 0; i < 5; i++) {
        char a[128];
        ukko_discovery_authority(&cps.v[i], a, sizeof(a));
        cr_expect_str_eq(a, want[i], "point %zu: IPv4 by bytes, then IPv6, then names", i);
        cr_expect_str_eq(cps.v[i].pod, "", "static points have no pod");
    }
    cr_expect_str_eq(cps.v[3].host, "::1", "host is the bare address, brackets only in URLs");
    ukko_discovery_points_destroy(&cps);
}

Test(points, static_list_refuses_bad_items_and_names_them, .timeout = 10)
{
    const char *bad[] = {"127.0.0.1",      "127.0.0.1:",    "127.0.0.1:0",   "127.0.0.1:65536",
                         ":8558",          "::1:8558",      "[::1]8558",     "[nothost]:8558",
                         "a b:8558",       "127.0.0.1:85x", "[]:8558",       "host:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ukko_contact_points_t cps = {0};
        char why[256] = "";
        cr_expect_eq(parse(&bad[i], 1, &cps, why, sizeof(why)), UKKO_EINVAL, "\"%s\" accepted",
                     bad[i]);
        cr_expect(strstr(why, bad[i]) != NULL, "why should quote \"%s\": %s", bad[i], why);
        cr_expect_eq(cps.n, 0);
        ukko_discovery_points_destroy(&cps);
    }
}

Test(points, equal_copy_and_json, .timeout = 10)
{
    const char *items[] = {"127.0.0.60:1", "[fd00::1]:2"};
    ukko_contact_points_t a = {0}, b = {0}, c = {0};
    char why[256];
    cr_assert_eq(parse(items, 2, &a, why, sizeof(why)), 0);
    cr_assert_eq(ukko_discovery_points_copy(&b, &a), 0);
    cr_expect(ukko_discovery_points_equal(&a, &b), "a copy must compare equal");
    cr_assert_eq(parse(items, 1, &c, why, sizeof(why)), 0);
    cr_expect_not(ukko_discovery_points_equal(&a, &c), "sets of different sizes are not equal");
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(ukko_discovery_points_json(&a, &out), 0);
    cr_expect_str_eq(out.data,
                     "{\"contact_points\":[{\"pod\":\"\",\"host\":\"127.0.0.60\",\"port\":1},"
                     "{\"pod\":\"\",\"host\":\"fd00::1\",\"port\":2}]}");
    ukko_buf_reset(&out);
    ukko_contact_points_t none = {0};
    cr_assert_eq(ukko_discovery_points_json(&none, &out), 0);
    cr_expect_str_eq(out.data, "{\"contact_points\":[]}");
    ukko_buf_destroy(&out);
    ukko_discovery_points_destroy(&a);
    ukko_discovery_points_destroy(&b);
    ukko_discovery_points_destroy(&c);
}
