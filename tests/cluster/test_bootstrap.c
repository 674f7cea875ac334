/* test_bootstrap.c: the formation rule (cluster__bootstrap_decide) and the
 * parser of a contact point's /bootstrap/seed-nodes answer
 * (cluster/bootstrap.c), without a network: the rule of the map, case by
 * case, and answers as Pekko Management and ukko write them. */
#include "bootstrap.h"

#include <criterion/criterion.h>
#include <string.h>

static ukko_cluster_bootstrap_config_t defaults(void)
{
    ukko_cluster_bootstrap_config_t bc = {.required_contact_point_nr = 2,
                                          .expected_contact_point_nr = 0,
                                          .stable_margin_ms = 3000,
                                          .probe_interval_ms = 200,
                                          .probing_failure_timeout_ms = 3000,
                                          .new_cluster_enabled = true,
                                          .contact_with_all_contact_points = true};
    return bc;
}

/* Three points, all answered, none in a cluster, this node the lowest,
 * discovery current, the set just changed. */
static cluster__bs_view_t ready_view(void)
{
    cluster__bs_view_t v = {.points = 3,
                            .answered = 3,
                            .expected = 0,
                            .self_listed = true,
                            .self_lowest = true,
                            .fresh = true,
                            .stable_ms = 0,
                            .seeds = false};
    return v;
}

static cluster__bs_act_t decide(const ukko_cluster_bootstrap_config_t *bc,
                                const cluster__bs_view_t *v, char *why)
{
    return cluster__bootstrap_decide(bc, v, why, 320);
}

Test(bootstrap_rule, an_existing_cluster_is_always_joined, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    v.seeds = true;
    v.expected = 3;
    char why[320];
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_JOIN, "seed nodes reported: join (%s)", why);
    bc.new_cluster_enabled = false;
    v.self_lowest = false;
    v.fresh = false;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_JOIN,
                 "joining needs neither the lowest address nor a current set");
}

Test(bootstrap_rule, the_expected_size_forms_at_once, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    v.expected = 3;
    char why[320];
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_FORM,
                 "all 3 expected answered, lowest: form without waiting (%s)", why);
    v.points = v.answered = 2;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "2 of 3 expected: wait (%s)", why);
    cr_expect(strstr(why, "2 of 3 expected") != NULL, "says so: %s", why);
    v.stable_ms = 3000;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_FORM,
                 "an expected size not reached falls back to the stable margin (%s)", why);
}

Test(bootstrap_rule, without_the_expected_size_the_stable_margin_decides, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    char why[320];
    v.stable_ms = 2999;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "%s", why);
    cr_expect(strstr(why, "stable") != NULL, "names the stable margin: %s", why);
    v.stable_ms = 3000;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_FORM, "%s", why);
}

Test(bootstrap_rule, only_the_lowest_forms, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    v.expected = 3;
    v.stable_ms = 60000;
    v.self_lowest = false;
    char why[320];
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "not the lowest: wait (%s)", why);
    v.self_listed = false;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT,
                 "a node that does not see itself forms nothing (%s)", why);
}

Test(bootstrap_rule, every_point_and_enough_points_must_have_answered, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    v.stable_ms = 60000;
    v.answered = 2;
    char why[320];
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT,
                 "contact-with-all-contact-points: 2 of 3 is not enough (%s)", why);
    bc.contact_with_all_contact_points = false;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_FORM, "without it, 2 >= required 2 (%s)", why);
    v.answered = 1;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "1 < required-contact-point-nr (%s)",
                 why);
    v.points = v.answered = 1;
    bc.contact_with_all_contact_points = true;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "a lone node never forms by default");
    v.expected = 1;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_FORM,
                 "but a StatefulSet of one replica is a cluster of one (%s)", why);
}

Test(bootstrap_rule, no_cluster_on_a_stale_set_or_when_forming_is_off, .timeout = 10)
{
    ukko_cluster_bootstrap_config_t bc = defaults();
    cluster__bs_view_t v = ready_view();
    v.expected = 3;
    v.fresh = false;
    char why[320];
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "discovery failing: wait (%s)", why);
    v.fresh = true;
    bc.new_cluster_enabled = false;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "new-cluster-enabled false (%s)", why);
    cr_expect(strstr(why, "new-cluster-enabled") != NULL, "%s", why);
    v.points = v.answered = 0;
    bc.new_cluster_enabled = true;
    cr_expect_eq(decide(&bc, &v, why), CLUSTER__BS_WAIT, "nothing discovered (%s)", why);
}

/* ------------------------------------------------------- seed-nodes */

static size_t parse(const char *json, cluster__addr_t *out, size_t *foreign, int *rc)
{
    size_t n = 0;
    *rc = cluster__bootstrap_parse_seeds(json, strlen(json), "ukko", out, 4, &n, foreign);
    return n;
}

Test(seed_nodes, pekko_shape_gives_the_gossip_addresses, .timeout = 10)
{
    cluster__addr_t a[4];
    size_t foreign;
    int rc;
    size_t n = parse("{\"selfNode\":\"ukko://ukko@10.0.0.3:7355\",\"seedNodes\":["
                     "{\"node\":\"ukko://ukko@10.0.0.1:7355\",\"nodeUid\":\"ab\",\"status\":\"Up\","
                     "\"roles\":[\"dc-default\"]},"
                     "{\"node\":\"ukko://ukko@[fd00::2]:7400\",\"nodeUid\":1,\"status\":\"Joining\"},"
                     "{\"node\":\"ukko://ukko@10.0.0.1:7355\"}]}",
                     a, &foreign, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 2, "duplicates are taken once");
    char s[64];
    cluster__addr_format(&a[0], s, sizeof(s));
    cr_expect_str_eq(s, "10.0.0.1:7355");
    cluster__addr_format(&a[1], s, sizeof(s));
    cr_expect_str_eq(s, "[fd00::2]:7400");
    cr_expect_eq(foreign, 0);
}

Test(seed_nodes, other_clusters_and_odd_entries_are_left_out, .timeout = 10)
{
    cluster__addr_t a[4];
    size_t foreign;
    int rc;
    size_t n = parse("{\"seedNodes\":[{\"node\":\"ukko://shop@10.0.0.1:7355\"},"
                     "{\"node\":\"pekko://ukko@10.0.0.2:7355\"},{\"node\":\"ukko://ukko@nohost\"},"
                     "{\"node\":\"ukko://ukko@10.0.0.3\"},{\"node\":7},{},\"x\"]}",
                     a, &foreign, &rc);
    cr_expect_eq(rc, 0);
    cr_expect_eq(n, 0, "nothing to join there");
    cr_expect_eq(foreign, 2, "two seeds of other clusters are counted, to be reported");
    n = parse("{\"selfNode\":\"ukko://ukko@10.0.0.3:7355\",\"seedNodes\":[]}", a, &foreign, &rc);
    cr_expect_eq(rc, 0);
    cr_expect_eq(n, 0, "not a member yet: no seeds");
}

Test(seed_nodes, what_is_not_a_seed_nodes_answer_is_refused, .timeout = 10)
{
    cluster__addr_t a[4];
    size_t foreign;
    int rc;
    const char *bad[] = {"", "[]", "{}", "{\"seedNodes\":{}}", "{\"seedNodes\":[", "OK"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = parse(bad[i], a, &foreign, &rc);
        cr_expect_eq(rc, UKKO_EPROTO, "\"%s\" is refused", bad[i]);
        cr_expect_eq(n, 0);
    }
}
