/* fuzz_podlist: the pod-list parser (discovery/podlist.c) on arbitrary bytes,
 * as an API server (or whatever answers in its place) could send them. The
 * first byte picks the filter. Invariants: an error leaves no points; on
 * success every point has a valid IP, a port in 1..65535 and a pod name, the
 * set is sorted, and the counts add up; no leak, no overflow. */
#include "discovery.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const ports[] = {NULL, "management", "http", ""};
    static const char *const containers[] = {NULL, "ukko", "sidecar", "user-function"};
    ukko_podlist_filter_t f = {ports[data[0] & 3], containers[(data[0] >> 2) & 3],
                               (data[0] >> 4) ? 8558 : 1};
    data++;
    size--;
    ukko_contact_points_t cps = {0};
    ukko_podlist_stats_t st;
    char why[256];
    int rc = ukko_discovery_podlist_parse((const char *)data, size, &f, &cps, &st, why,
                                          sizeof(why));
    if (rc < 0) {
        if (cps.n != 0 || cps.v != NULL || why[0] == '\0')
            abort();
        return 0;
    }
    if (rc != 0 || st.kept != cps.n || st.kept > st.pods ||
        st.kept + st.terminating + st.not_running + st.no_ip + st.waiting + st.bad != st.pods)
        abort();
    for (size_t i = 0; i < cps.n; i++) {
        unsigned char a[16];
        const ukko_contact_point_t *cp = &cps.v[i];
        if (inet_pton(AF_INET, cp->host, a) != 1 && inet_pton(AF_INET6, cp->host, a) != 1)
            abort();
        if (cp->port < 1 || cp->port > 65535 || !cp->pod)
            abort();
    }
    /* Sorted: re-sorting a copy must change nothing. */
    ukko_contact_points_t copy = {0};
    if (ukko_discovery_points_copy(&copy, &cps) == 0) {
        if (!ukko_discovery_points_equal(&copy, &cps))
            abort();
        ukko_discovery_points_destroy(&copy);
    }
    ukko_discovery_points_destroy(&cps);
    return 0;
}
