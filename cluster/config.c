/* config.c: the cluster.* settings: the key table, its checks, and the
 * protocol parameters derived from it. Main thread, at start. */
#include "cluster_internal.h"

#include <stdio.h>
#include <string.h>

static int check_roles(const cJSON *v, char *why, size_t whylen)
{
    for (const cJSON *it = v->child; it; it = it->next) {
        const char *s = it->valuestring;
        size_t n = strlen(s);
        bool ok = n > 0 && n <= CLUSTER__MAX_ROLE_LEN;
        for (size_t i = 0; ok && i < n; i++)
            ok = s[i] > 0x20 && s[i] < 0x7f && s[i] != ',';
        if (!ok) {
            snprintf(why, whylen,
                     "at most %d roles, each 1 to %d printable characters without spaces "
                     "or commas",
                     CLUSTER__MAX_ROLES, CLUSTER__MAX_ROLE_LEN);
            return UKKO_EINVAL;
        }
    }
    return 0;
}

static int check_seeds(const cJSON *v, char *why, size_t whylen)
{
    for (const cJSON *it = v->child; it; it = it->next) {
        const char *s = it->valuestring;
        const char *colon = strrchr(s, ':');
        if (!*s || (colon && colon[1] == '\0')) {
            snprintf(why, whylen, "a list of \"host:port\" (e.g. [\"10.0.0.5:7355\"])");
            return UKKO_EINVAL;
        }
    }
    return 0;
}

static int check_name(const cJSON *v, char *why, size_t whylen)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_';
    if (!ok) {
        snprintf(why, whylen, "1 to 64 letters, digits, '-' or '_' (like a Pekko system name)");
        return UKKO_EINVAL;
    }
    return 0;
}

static int check_margin(const cJSON *v, char *why, size_t whylen)
{
    int64_t ms = -1;
    if (cJSON_IsString(v) &&
        (!strcmp(v->valuestring, "auto") ||
         (ukko_parse_duration(v->valuestring, &ms) == 0 && ms >= 0 && ms <= 3600000)))
        return 0;
    snprintf(why, whylen,
             "\"auto\" (the split-brain resolver's stable-after, and at least its "
             "down-all-when-unstable + 2.5s) or a duration from 0s to 1h such as \"10s\"");
    return UKKO_EINVAL;
}

/* Pekko's margin is the resolver's stable-after. Here also at least
 * down-all-when-unstable + 2.5 s: a side that should go but whose view
 * keeps changing goes at the latest down-all-when-unstable after the other
 * side could decide, plus the skew of the two sides' first suspicions (a
 * probe interval and its timeout, 1.5 s) and a Kafka feed's last commit
 * (0.8 s). docs/sharding.md, "The margin", has the whole bound. */
int64_t cluster__down_removal_margin_ms(const ukko_cluster_config_t *cc)
{
    const char *s = cc->sharding.down_removal_margin;
    int64_t ms = 0;
    if (s && strcmp(s, "auto") && ukko_parse_duration(s, &ms) == 0)
        return ms;
    cluster__sbr_params_t p;
    char why[320];
    (void)cluster__sbr_params_from_config(&p, &cc->sbr, why, sizeof(why)); /* filled either way */
    int64_t unstable = p.down_all_when_unstable_ms ? p.down_all_when_unstable_ms + 2500 : 0;
    return p.stable_after_ms > unstable ? p.stable_after_ms : unstable;
}

#define CC(f) offsetof(ukko_cluster_config_t, f)
static const ukko_cfg_key_t cluster_keys[] = {
    {"cluster.hostname", UKKO_CFG_STRING, CC(hostname), "\"\"", 0, 0, NULL, NULL,
     "Address this node gossips on and tells the others (the pod IP: the manifests set it "
     "from status.podIP); \"\" picks, in a pod, the address its hostname resolves to, else "
     "this host's first non-loopback IPv4 address."},
    {"cluster.port", UKKO_CFG_INT, CC(port), "7355", 1, 65535, NULL, NULL,
     "Port for gossip (UDP) and state sync (TCP)."},
    {"cluster.name", UKKO_CFG_STRING, CC(name), "\"ukko\"", 0, 0, NULL, check_name,
     "Cluster name: authenticated with every packet, so two clusters never mix."},
    {"cluster.roles", UKKO_CFG_STRLIST, CC(roles), "[]", 0, CLUSTER__MAX_ROLES, NULL,
     check_roles, "Roles of this node (Pekko's cluster roles)."},
    {"cluster.seed-nodes", UKKO_CFG_STRLIST, CC(seed_nodes), "[]", 0, 64, NULL, check_seeds,
     "\"host:port\" of members to join through; a node listed first that finds none forms "
     "the cluster; empty (the usual): bootstrap through discovery (docs/bootstrap.md)."},
    {"cluster.keyring-path", UKKO_CFG_STRING, CC(keyring_path), "null", 0, 0, NULL, NULL,
     "JSON list of base64 AES-256 keys (first sends, all receive), re-read when it changes."},
    {"cluster.insecure", UKKO_CFG_BOOL, CC(insecure), "false", 0, 0, NULL, NULL,
     "Gossip unencrypted and unauthenticated, without a keyring (local tests only)."},
    {"cluster.mtu", UKKO_CFG_INT, CC(mtu), "1400", 576, 65000, NULL, NULL,
     "Largest gossip packet, in bytes, sealing included."},
    {"cluster.probe-interval", UKKO_CFG_DURATION, CC(probe_interval_ms), "\"1s\"", 50, 60000,
     NULL, NULL, "Each node probes one member per interval."},
    {"cluster.probe-timeout", UKKO_CFG_DURATION, CC(probe_timeout_ms), "\"500ms\"", 10, 60000,
     NULL, NULL, "Wait for a direct ack before asking helpers (indirect probes)."},
    {"cluster.indirect-checks", UKKO_CFG_INT, CC(indirect_checks), "3", 0, 16, NULL, NULL,
     "Helpers asked to probe a member that did not answer."},
    {"cluster.gossip-interval", UKKO_CFG_DURATION, CC(gossip_interval_ms), "\"100ms\"", 10,
     10000, NULL, NULL, "Gossip round: queued news goes to gossip-nodes random members."},
    {"cluster.gossip-nodes", UKKO_CFG_INT, CC(gossip_nodes), "3", 1, 16, NULL, NULL,
     "Members each gossip round goes to."},
    {"cluster.retransmit-mult", UKKO_CFG_INT, CC(retransmit_mult), "4", 1, 16, NULL, NULL,
     "Each piece of news is sent retransmit-mult * ceil(log10(n + 1)) times."},
    {"cluster.suspicion-timeout", UKKO_CFG_DURATION, CC(suspicion_timeout_ms), "\"3s\"", 100,
     600000, NULL, NULL,
     "Not used: the split-brain resolver decides when a suspected member is Down "
     "(cluster.split-brain-resolver.stable-after); kept so that configs load."},
    {"cluster.suspicion-max-mult", UKKO_CFG_INT, CC(suspicion_max_mult), "6", 1, 100, NULL, NULL,
     "Not used (see cluster.suspicion-timeout); kept so that configs load."},
    {"cluster.awareness-max", UKKO_CFG_INT, CC(awareness_max), "8", 1, 64, NULL, NULL,
     "Most a node slows its own probing when it seems to be the slow one (Lifeguard)."},
    {"cluster.loop-lag-tolerance", UKKO_CFG_DURATION, CC(loop_lag_tolerance_ms), "\"500ms\"", 50,
     60000, NULL, NULL,
     "When this node's loop runs later than this, it was stalled: it blames nobody for "
     "what timed out meanwhile."},
    {"cluster.sync-interval", UKKO_CFG_DURATION, CC(sync_interval_ms), "\"30s\"", 100, 3600000,
     NULL, NULL, "Full-state sync (digest first, over TCP) with a random member."},
    {"cluster.sync-timeout", UKKO_CFG_DURATION, CC(sync_timeout_ms), "\"5s\"", 100, 600000, NULL,
     NULL, "A state sync or join request must finish within this."},
    {"cluster.join-retry-interval", UKKO_CFG_DURATION, CC(join_retry_interval_ms), "\"1s\"", 50,
     600000, NULL, NULL, "Pause between rounds of join requests to the seed nodes."},
    {"cluster.weakly-up-after", UKKO_CFG_DURATION, CC(weakly_up_after_ms), "\"7s\"", 100,
     3600000, NULL, NULL,
     "A joining member becomes WeaklyUp after this long without convergence (Pekko's "
     "allow-weakly-up-members)."},
    {"cluster.removed-after", UKKO_CFG_DURATION, CC(removed_after_ms), "\"10s\"", 0, 3600000,
     NULL, NULL, "A Down member is listed this long before it is Removed."},
    {"cluster.max-members", UKKO_CFG_INT, CC(max_members), "20000", 2, 1000000, NULL, NULL,
     "Most members this node keeps; news of more is dropped and counted."},
    {"cluster.max-sync-bytes", UKKO_CFG_INT, CC(max_sync_bytes), "8388608", 65536, 1073741824,
     NULL, NULL, "Largest state-sync frame, in bytes."},
};

/* Bootstrap (docs/bootstrap.md): Pekko Management's names, flattened under
 * cluster.bootstrap. Defaults are faster than Pekko's (5 s margin, 1 s
 * probes) because discovery watches: a new pod reaches every node within
 * milliseconds, not a refresh interval. */
static const ukko_cfg_key_t bootstrap_keys[] = {
    {"cluster.bootstrap.required-contact-point-nr", UKKO_CFG_INT,
     CC(bootstrap.required_contact_point_nr), "2", 1, 100000, NULL, NULL,
     "Contact points that must have answered before the lowest of them forms a new cluster."},
    {"cluster.bootstrap.expected-contact-point-nr", UKKO_CFG_INT,
     CC(bootstrap.expected_contact_point_nr), "0", 0, 100000, NULL, NULL,
     "Contact points expected at a cold start: once all answered, the lowest forms at once. "
     "0: spec.replicas of the StatefulSet that owns the pod, when RBAC allows reading it; else "
     "the stable margin decides."},
    {"cluster.bootstrap.stable-margin", UKKO_CFG_DURATION, CC(bootstrap.stable_margin_ms),
     "\"3s\"", 0, 3600000, NULL, NULL,
     "When the expected number is not known (or not reached): the set of contact points must "
     "be unchanged this long before the lowest forms a new cluster (Pekko: 5s)."},
    {"cluster.bootstrap.probe-interval", UKKO_CFG_DURATION, CC(bootstrap.probe_interval_ms),
     "\"200ms\"", 10, 60000, NULL, NULL,
     "Each contact point's GET /bootstrap/seed-nodes is asked this often until this node is "
     "a member (Pekko: 1s)."},
    {"cluster.bootstrap.probing-failure-timeout", UKKO_CFG_DURATION,
     CC(bootstrap.probing_failure_timeout_ms), "\"3s\"", 100, 600000, NULL, NULL,
     "A contact point's answer counts this long; one that has not answered within it is not "
     "counted (and one probe may take this long)."},
    {"cluster.bootstrap.new-cluster-enabled", UKKO_CFG_BOOL, CC(bootstrap.new_cluster_enabled),
     "true", 0, 0, NULL, NULL,
     "false: never form a new cluster, only join one a contact point reports (e.g. while "
     "rolling out to an existing cluster)."},
    {"cluster.bootstrap.contact-with-all-contact-points", UKKO_CFG_BOOL,
     CC(bootstrap.contact_with_all_contact_points), "true", 0, 0, NULL, NULL,
     "A new cluster is formed only when every discovered contact point has answered."},
};

/* Cluster sharding (docs/sharding.md): Pekko's names where it has them. */
static const ukko_cfg_key_t sharding_keys[] = {
    {"cluster.run-coordinated-shutdown-when-down", UKKO_CFG_BOOL, CC(shutdown_when_down),
     "true", 0, 0, NULL, NULL,
     "A node that learns it was downed (split-brain resolver, `ukko down`) stops its shards at "
     "once and exits 1, so that Kubernetes restarts it as a new member (Pekko's default); "
     "false: it stays up, not ready."},
    {"cluster.sharding.down-removal-margin", UKKO_CFG_STRING,
     CC(sharding.down_removal_margin), "\"auto\"", 0, 0, NULL, check_margin,
     "Shards of a member that is Down (or gone) move only this long after the coordinator saw "
     "it so, so that a downed node, whose side of a cut decides on its own clock, has stopped "
     "them first; \"auto\": the resolver's stable-after, and at least its "
     "down-all-when-unstable + 2.5s (7.75s with the defaults; see docs/sharding.md)."},
    {"cluster.sharding.passivate-idle-timeout", UKKO_CFG_DURATION,
     CC(sharding.passivate_idle_ms), "\"120s\"", 100, 86400000, NULL, NULL,
     "An entity that got no message for this long is stopped (its state freed); the next "
     "message starts it again (Pekko: 120s)."},
    {"cluster.sharding.buffer-size", UKKO_CFG_INT, CC(sharding.buffer_size), "100000", 0,
     100000000, NULL, NULL,
     "Tells a node holds, over all shards, while their shard has no owner or is handed off; "
     "past it ukko_entity_tell returns UKKO_EAGAIN (Pekko: 100000)."},
    {"cluster.sharding.buffer-bytes", UKKO_CFG_INT, CC(sharding.buffer_bytes), "67108864",
     65536, 68719476736, NULL, NULL,
     "Bytes of the tells a node holds (see buffer-size; a tell may be up to max-message-bytes); "
     "past it ukko_entity_tell returns UKKO_EAGAIN."},
    {"cluster.sharding.link-buffer-bytes", UKKO_CFG_INT, CC(sharding.link_buffer_bytes),
     "268435456", 65536, 68719476736, NULL, NULL,
     "Bytes of sharding frames a node keeps queued to all members together until they "
     "acknowledge them (each link also holds at most 8 x cluster.max-sync-bytes); past it a tell "
     "to another node returns UKKO_EAGAIN."},
    {"cluster.sharding.rebalance-interval", UKKO_CFG_DURATION,
     CC(sharding.rebalance_interval_ms), "\"1s\"", 50, 3600000, NULL, NULL,
     "How often the coordinator looks at the balance of shards over the members (Pekko: "
     "10s; new and leaving members are acted on at once either way)."},
    {"cluster.sharding.rebalance-max-simultaneous", UKKO_CFG_INT,
     CC(sharding.rebalance_max_simultaneous), "3", 1, 10000, NULL, NULL,
     "Hand-offs a rebalance keeps under way at once, per entity type (a region going away "
     "hands off all of its shards at once)."},
    {"cluster.sharding.handoff-timeout", UKKO_CFG_DURATION, CC(sharding.handoff_timeout_ms),
     "\"5s\"", 100, 600000, NULL, NULL,
     "A shard's old owner waits this long for every member to confirm it holds the shard's "
     "tells before it stops the shard anyway."},
    {"cluster.sharding.max-message-bytes", UKKO_CFG_INT, CC(sharding.max_message_bytes),
     "1048576", 0, 67108864, NULL, NULL,
     "Largest payload of a tell by entity id, in bytes."},
    {"cluster.sharding.link-idle-timeout", UKKO_CFG_DURATION, CC(sharding.link_idle_ms),
     "\"60s\"", 100, 86400000, NULL, NULL,
     "A node-to-node sharding connection that carried nothing for this long is closed (it "
     "opens again with the next frame; the frame numbering carries on)."},
};
#undef CC

int ukko_cluster_config_register(ukko_config_t *cfg, ukko_cluster_config_t *cc)
{
    int rc = ukko_config_add(cfg, cluster_keys, sizeof(cluster_keys) / sizeof(cluster_keys[0]), cc);
    if (rc == 0)
        rc = ukko_config_add(cfg, bootstrap_keys,
                             sizeof(bootstrap_keys) / sizeof(bootstrap_keys[0]), cc);
    if (rc == 0)
        rc = ukko_config_add(cfg, sharding_keys,
                             sizeof(sharding_keys) / sizeof(sharding_keys[0]), cc);
    return rc < 0 ? rc : cluster__sbr_config_register(cfg, cc);
}

bool ukko_cluster_configured(const ukko_cluster_config_t *cc)
{
    return cc->seed_nodes.n > 0 || cc->keyring_path || cc->insecure;
}

void cluster__params_from_config(cluster__params_t *p, const ukko_cluster_config_t *cc)
{
    cluster__params_default(p);
    p->probe_interval_ms = cc->probe_interval_ms;
    p->probe_timeout_ms = cc->probe_timeout_ms;
    p->indirect_checks = (int)cc->indirect_checks;
    p->gossip_interval_ms = cc->gossip_interval_ms;
    p->gossip_nodes = (int)cc->gossip_nodes;
    p->retransmit_mult = (int)cc->retransmit_mult;
    p->suspicion_timeout_ms = cc->suspicion_timeout_ms;
    p->suspicion_max_mult = (int)cc->suspicion_max_mult;
    p->awareness_max = (int)cc->awareness_max;
    p->loop_lag_tolerance_ms = cc->loop_lag_tolerance_ms;
    p->sync_interval_ms = cc->sync_interval_ms;
    p->join_retry_interval_ms = cc->join_retry_interval_ms;
    p->weakly_up_after_ms = cc->weakly_up_after_ms;
    p->removed_after_ms = cc->removed_after_ms;
    p->max_members = (size_t)cc->max_members;
    p->mtu = (size_t)cc->mtu;
    p->max_sync_bytes = (size_t)cc->max_sync_bytes;
}

const char *ukko_member_status_name(int status)
{
    static const char *const names[] = {"Joining", "WeaklyUp", "Up",     "Leaving",
                                        "Exiting", "Down",     "Removed"};
    return status >= 0 && status <= UKKO_MEMBER_REMOVED ? names[status] : "Unknown";
}
