/* test_k8s_objects.c: the two objects the expected size is read from
 * (discovery/k8s_objects.c): a pod's owning StatefulSet and a StatefulSet's
 * spec.replicas, as a real API server and the emulator write them. */
#include "discovery.h"

#include <criterion/criterion.h>
#include <string.h>

static int owner(const char *json, char *out)
{
    return ukko_discovery_pod_owner_parse(json, strlen(json), out, 254);
}

Test(k8s_objects, the_controller_statefulset_owns_the_pod, .timeout = 10)
{
    char name[254];
    const char *pod =
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"shop-2\",\"ownerReferences\":["
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"x\",\"controller\":false},"
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"name\":\"shop\","
        "\"uid\":\"u\",\"controller\":true,\"blockOwnerDeletion\":true}]}}";
    cr_assert_eq(owner(pod, name), 0);
    cr_expect_str_eq(name, "shop");
}

Test(k8s_objects, a_pod_without_a_statefulset_has_no_owner, .timeout = 10)
{
    char name[254];
    cr_expect_eq(owner("{\"metadata\":{\"name\":\"p\"}}", name), UKKO_ENOENT);
    cr_expect_eq(owner("{\"metadata\":{\"ownerReferences\":[{\"kind\":\"ReplicaSet\","
                       "\"name\":\"rs\",\"controller\":true}]}}",
                       name),
                 UKKO_ENOENT, "a Deployment's pod is not counted by a StatefulSet");
    cr_expect_eq(owner("{\"metadata\":{\"ownerReferences\":[{\"kind\":\"StatefulSet\","
                       "\"name\":\"s\"}]}}",
                       name),
                 UKKO_ENOENT, "only the controller reference counts");
    cr_expect_eq(owner("[]", name), UKKO_EPROTO);
    cr_expect_eq(owner("{\"metadata\":", name), UKKO_EPROTO);
}

Test(k8s_objects, replicas_of_a_statefulset, .timeout = 10)
{
    int n = -1;
    const char *sts = "{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":5,\"serviceName\":\"u\"}}";
    cr_assert_eq(ukko_discovery_replicas_parse(sts, strlen(sts), &n), 0);
    cr_expect_eq(n, 5);
    const char *dflt = "{\"kind\":\"StatefulSet\",\"spec\":{}}";
    cr_assert_eq(ukko_discovery_replicas_parse(dflt, strlen(dflt), &n), 0);
    cr_expect_eq(n, 1, "the API server's default is 1");
    const char *bad[] = {"{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":-1}}",
                         "{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":2.5}}",
                         "{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":\"3\"}}",
                         "{\"kind\":\"Status\",\"spec\":{\"replicas\":3}}", "{}", "nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(ukko_discovery_replicas_parse(bad[i], strlen(bad[i]), &n), UKKO_EPROTO,
                     "%s has no usable replicas", bad[i]);
}
