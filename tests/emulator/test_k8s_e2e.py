#!/usr/bin/env python3
"""Issue 12's story end to end, as a user runs it with kubectl: the emulator's
StatefulSet controller (--controller) runs the orders application
(`ukko run --app orders`) against the real Apache Kafka broker
(tests/kafka/kafka_rig.py), orders flow at a steady rate (kcat, as in
scripts/demo.py, whose Feed, View and settle logic this test drives), and:

  kubectl apply -f statefulset.json                 3 pods
  kubectl scale statefulset ukko --replicas=5       shards move to ukko-3, ukko-4
  kubectl delete pod ukko-1                         back with the same name and address, rejoins
  kubectl rollout restart statefulset ukko          pods replaced one by one from ukko-4 down,
                                                    each after the one above is ready
                                                    (kubectl rollout status says complete)
  kill -9 of ukko-2's process                       restarted by the kubelet, rejoins
  kubectl scale statefulset ukko --replicas=2       shards move away from ukko-4, -3, -2

After each step: every pod READY as its /ready says, one cluster, each of the 12
shards on exactly one live pod, and every shard that moved handed off by its old
owner (its log says so; none "stopped at once"). At the end, with the producer
stopped: every offset of `orders` appears as a source in `orders-processed`,
no duplicate arrived during a graceful step, and the duplicates of the kill -9
are all of records the killed pod had processed first, in partitions it owned,
at most one commit batch (kafka.commit.max-batch, set to MAX_BATCH in the
StatefulSet's env) per partition it owned.

Pods on 127.0.8.2-127.0.8.40 (this test's range); the broker on 127.0.4.x.
No assertion is about timing: every step waits for a state, with a deadline.
Prints "SKIPPED: <why>" and exits 0 without UKKO_BIN, kubectl
(scripts/install-kubectl.sh), kcat or a real broker (Java 17, Maven).

    UKKO_BIN=build/ukko python3 tests/emulator/test_k8s_e2e.py      # ctest -R k8s_e2e
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "tests", "kafka"))

import demo  # noqa: E402
from kafka_rig import KafkaRig, KafkaUnavailable  # noqa: E402

UKKO_BIN = os.environ.get("UKKO_BIN") or ""
ADDRESSES = "127.0.8.2-127.0.8.40"
MAX_BATCH = 50          # kafka.commit.max-batch in the pods: the bound of a kill -9's repeats
STEP_DEADLINE = 90.0    # one step (a rollout restart of 5 pods is the longest)
PODS = demo.PODS


class Failed(Exception):
    pass


class KubectlStory(demo.Demo):
    """scripts/demo.py's Demo on a real broker, driven by kubectl."""

    def __init__(self, args, bootstrap):
        super().__init__(args)
        self.real_bootstrap = bootstrap
        self.victim = None           # (name, ip, shards) of the kill -9
        self.rollout = {}

    # -- setting up: the broker is the rig's; the set comes from kubectl apply

    def start(self):
        a = self.args
        with open(a.manifest) as f:
            sts = json.load(f)
        sts["spec"]["replicas"] = a.replicas
        keyring = demo.write_keyring(os.path.join(self.root, "state"))
        c = sts["spec"]["template"]["spec"]["containers"][0]
        demo.set_env(c, "UKKO_KAFKA_BOOTSTRAP_SERVERS", self.real_bootstrap)
        demo.set_env(c, "UKKO_CLUSTER_KEYRING_PATH", keyring)
        demo.set_env(c, "UKKO_KAFKA_COMMIT_MAX_BATCH", str(MAX_BATCH))
        self.manifest = os.path.join(self.root, "statefulset.json")
        with open(self.manifest, "w") as f:
            json.dump(sts, f, indent=1)
        self.bootstrap = self.real_bootstrap
        self.feed = demo.Feed(a.kcat, self.bootstrap, self.root, a.rate)
        self.feed.start()
        self.emu = demo.OwnSessionEmulator(["--controller", "--ukko", os.path.abspath(a.ukko),
                                            "--pod-addresses", a.pod_addresses], root=self.root)
        self.emu.start()
        self.screen.text("k8s e2e: Apache Kafka at %s, API emulator at https://%s:%d, pods on %s, "
                         "%.0f orders/s, kafka.commit.max-batch %d; logs in %s\n"
                         % (self.bootstrap, self.emu.info["host"], self.emu.info["port"], a.pod_addresses,
                            a.rate, MAX_BATCH, self.root))

    # -- helpers

    def fail(self, why):
        self.event("FAILED: " + why)
        self.failures.append(why)
        raise Failed(why)

    def kubectl_must(self, *argv, timeout=120):
        env = dict(os.environ, HOME=self.root)
        env.pop("KUBECONFIG", None)
        cmd = [shutil.which("kubectl"), "--kubeconfig", os.path.join(self.emu.state_dir, "kubeconfig"),
               "--cache-dir", os.path.join(self.root, "kube-cache")] + list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        self.event("$ kubectl %s   -> %s" % (" ".join(argv), said[-1] if said else "(nothing)"))
        if proc.returncode != 0:
            self.fail("kubectl %s exited %d: %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
        return proc.stdout

    def pod_object(self, name):
        status, doc = self.emu.client.get_json(PODS + "/" + name)
        return doc if status == 200 else None

    def owners(self):
        return {s: v[0] for s, v in self.view.owners().items()}

    def log_path(self, pod):
        return os.path.join(self.emu.state_dir, "pods", "default_%s.log" % pod)

    def log_marks(self):
        logs = os.path.join(self.emu.state_dir, "pods")
        return {name[len("default_"):-4]: os.path.getsize(os.path.join(logs, name))
                for name in os.listdir(logs) if name.endswith(".log")}

    def logs_since(self, marks):
        out = {}
        logs = os.path.join(self.emu.state_dir, "pods")
        for name in os.listdir(logs):
            pod = name[len("default_"):-4]
            with open(os.path.join(logs, name), "rb") as f:
                f.seek(marks.get(pod, 0))
                out[pod] = f.read().decode("utf-8", "replace")
        return out

    def settle(self, what, replicas, started, deadline=STEP_DEADLINE):
        """demo's step (replicas pods ready, one cluster, every shard on one
        live pod); then each pod's READY is what its /ready says."""
        global_deadline = demo.STEP_DEADLINE
        demo.STEP_DEADLINE = deadline
        try:
            ok = self.step(what, replicas, started)
        finally:
            demo.STEP_DEADLINE = global_deadline
        if not ok:
            raise Failed(self.failures[-1] if self.failures else what + ": did not settle")
        for p in self.view.live():
            ready = (self.view.nodes.get(p["name"]) or {}).get("ready")
            if not p["k8s_ready"] or ready != 200:
                self.fail("%s: %s is READY %s in the API but its /ready answers %s"
                          % (what, p["name"], p["k8s_ready"], ready))
        return self.owners()

    def check_handoffs(self, what, before, after, marks, stopped=()):
        """Every shard whose owner changed, and every shard of a pod that
        stopped (stopped: their names), was handed off by its old owner; no
        shard was stopped at once (that is for downed nodes only)."""
        logs = self.logs_since(marks)
        for pod, text in sorted(logs.items()):
            m = re.search(r"shard orders/\d+ stopped at once[^\n]*", text)
            if m:
                self.fail("%s: %s stopped a shard without a hand-off: %s" % (what, pod, m.group(0)))
        moved = [s for s in sorted(before) if after.get(s) != before[s] or before[s] in stopped]
        for s in moved:
            old, new = before[s], after.get(s)
            if not re.search(r"shard orders/%d handed off in" % s, logs.get(old, "")):
                self.fail("%s: shard %d left %s (now on %s), but %s's log has no hand-off of it"
                          % (what, s, old, new, old))
        self.event("%s: %d shard(s) left their owner, each handed off by it (its log: \"shard orders/N "
                   "handed off in ...\"), none stopped at once" % (what, len(moved)))

    def catch_up(self, what):
        """Waits until every order produced so far has a result, twice over,
        so that what a step repeats arrives while it is still that step."""
        for _ in range(2):
            marks = self.feed.frontier()
            if not self.wait(60, lambda v: self.feed.processed_below(marks)):
                self.fail("%s: the orders produced before it were not all processed within 60 s" % what)

    # -- the story

    def story(self):
        try:
            self._story()
        except Failed:
            pass

    def _story(self):
        a = self.args
        self.feed.phase = "apply"
        started = time.monotonic()
        self.kubectl_must("apply", "-f", self.manifest)
        self.settle("applied", a.replicas, started)
        if not self.wait(demo.STEP_DEADLINE, lambda v: self.feed.first_processed is not None):
            self.fail("no order was processed within %.0f s of the 3 pods being ready" % demo.STEP_DEADLINE)
        self.wait(a.hold)

        # Scale up: the new pods take shards from the old ones.
        self.feed.phase = "scale to 5"
        before, marks, started = self.owners(), self.log_marks(), time.monotonic()
        self.kubectl_must("scale", "statefulset", "ukko", "--replicas=%d" % a.scale_up)
        after = self.settle("scaled to %d" % a.scale_up, a.scale_up, started)
        for name in ("ukko-%d" % i for i in range(a.replicas, a.scale_up)):
            if name not in after.values():
                self.fail("scaled to %d: the new pod %s runs no shard: %s" % (a.scale_up, name, after))
        self.check_handoffs("scale to %d" % a.scale_up, before, after, marks)
        self.wait(a.hold)

        # Delete a pod: it stops (SIGTERM, hand-off, leave) and comes back.
        self.feed.phase = "delete pod"
        old = self.pod_object("ukko-1")
        before, marks, started = self.owners(), self.log_marks(), time.monotonic()
        self.kubectl_must("delete", "pod", "ukko-1")
        if not self.wait(STEP_DEADLINE, lambda v: (self.pod_object("ukko-1") or {}).get("metadata", {}).get("uid")
                         not in (None, old["metadata"]["uid"])):
            self.fail("ukko-1 was not made again within %.0f s of its deletion" % STEP_DEADLINE)
        after = self.settle("ukko-1 deleted and back", a.scale_up, started)
        new = self.pod_object("ukko-1")
        if new["status"].get("podIP") != old["status"].get("podIP"):
            self.fail("ukko-1 came back on %s, not on its address %s"
                      % (new["status"].get("podIP"), old["status"].get("podIP")))
        if "ukko-1" not in after.values():
            self.fail("ukko-1 came back but runs no shard: %s" % after)
        self.event("ukko-1 is back: same name, same address %s, new uid, a member running shards %s"
                   % (new["status"]["podIP"], ",".join(self.view.shards_of("ukko-1"))))
        self.check_handoffs("delete pod ukko-1", before, after, marks, stopped=("ukko-1",))
        self.wait(a.hold)

        # Rolling restart: one pod at a time from the highest ordinal, each
        # after the one above it is ready.
        self.feed.phase = "rollout restart"
        uids = {p["name"]: (self.pod_object(p["name"]) or {}).get("metadata", {}).get("uid")
                for p in self.view.live()}
        before, marks, started = self.owners(), self.log_marks(), time.monotonic()
        self.kubectl_must("rollout", "restart", "statefulset", "ukko")
        worst = [0]

        def replaced(v):
            worst[0] = max(worst[0], a.scale_up - sum(1 for p in v.live() if p["k8s_ready"]))
            objs = {name: self.pod_object(name) for name in uids}
            return all(o and o["metadata"]["uid"] != uids[name] and not o["metadata"].get("deletionTimestamp")
                       for name, o in objs.items()) and v.settled(a.scale_up)
        if not self.wait(STEP_DEADLINE * 2, replaced):
            self.fail("rollout restart: not every pod was replaced and settled within %.0f s (unavailable at "
                      "worst: %d)" % (STEP_DEADLINE * 2, worst[0]))
        status = self.kubectl_must("rollout", "status", "statefulset", "ukko", "--timeout=60s")
        # "partitioned roll out complete" is what kubectl says when the set
        # has spec.updateStrategy.rollingUpdate (partition 0 by default).
        if "roll out complete" not in status and "rolling update complete" not in status:
            self.fail("kubectl rollout status says %r, not that the rolling update is complete" % status)
        after = self.settle("rolled out", a.scale_up, started)
        made = sorted((self.pod_object(name)["metadata"]["creationTimestamp"], demo.ordinal(name))
                      for name in uids)
        order = [i for _, i in made]
        self.rollout = {"order": order, "worst_unavailable": worst[0]}
        if order != sorted(order, reverse=True) or len({t for t, _ in made}) != len(made):
            self.fail("rollout restart: pods were made again in the order %s (by creationTimestamp %s), "
                      "not one by one from the highest ordinal" % (order, [t for t, _ in made]))
        if worst[0] > 1:
            self.fail("rollout restart: %d pods were unavailable at once (a rolling update replaces one at "
                      "a time)" % worst[0])
        self.event("rollout restart: pods replaced in the order %s, at most %d unavailable at once"
                   % (" ".join("ukko-%d" % i for i in order), worst[0]))
        self.check_handoffs("rollout restart", before, after, marks, stopped=tuple(uids))
        self.catch_up("rollout restart")

        # kill -9: no hand-off; the kubelet restarts it; its shards resume on
        # their new owners from their last commits.
        victim = self.view.pod("ukko-2")
        shards = [int(s.rstrip("~")) for s in self.view.shards_of("ukko-2")]
        self.victim = (victim["name"], victim["ip"], shards)
        self.feed.phase = "kill -9"
        started = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        self.event("$ kill -9 %d   (ukko-2's process, running shards %s)" % (victim["pid"], shards))
        if not self.wait(STEP_DEADLINE, lambda v: (v.pod("ukko-2") or {}).get("restarts", 0) > victim["restarts"]
                         and v.pod("ukko-2")["pid"] not in (None, victim["pid"])):
            self.fail("ukko-2 was not restarted within %.0f s of its kill -9" % STEP_DEADLINE)
        self.settle("ukko-2 killed and back", a.scale_up, started)
        self.catch_up("kill -9")

        # Scale down: the leaving pods hand their shards off and leave.
        self.feed.phase = "scale to 2"
        before, marks, started = self.owners(), self.log_marks(), time.monotonic()
        self.kubectl_must("scale", "statefulset", "ukko", "--replicas=%d" % a.scale_down)
        after = self.settle("scaled to %d" % a.scale_down, a.scale_down, started)
        self.check_handoffs("scale to %d" % a.scale_down, before, after, marks)
        self.catch_up("scale to %d" % a.scale_down)
        self.feed.phase = "end"
        self.steps_done.append("all")


def check_results(story, code):
    """The totals' claims; returns the problems."""
    problems = []
    if code != 0:
        problems.append("the story failed (exit %d): %s" % (code, "; ".join(story.failures) or "see above"))
    if story.feed is None:
        return problems + ["the story did not start"]
    s = story.feed.snapshot()
    if s["produced"] == 0 or s["missing"] != 0 or s["processed"] != s["produced"]:
        problems.append("produced %d orders, %d have a result, %d missing: every input offset must appear "
                        "in orders-processed" % (s["produced"], s["processed"], s["missing"]))
    graceful = [r for r in story.feed.repeats if r[0] != "kill -9"]
    if graceful:
        problems.append("%d duplicate(s) during graceful steps (none allowed), the first: %s"
                        % (len(graceful), graceful[:5]))
    kill = [r for r in story.feed.repeats if r[0] == "kill -9"]
    per_part = {}
    if story.victim is not None:
        name, ip, shards = story.victim
        for phase, p, o, first, node in kill:
            per_part[p] = per_part.get(p, 0) + 1
            if p not in shards or demo.node_ip(first) != ip:
                problems.append("kill -9: source %d/%d was repeated, but it was first processed by %s, not "
                                "by the killed %s (%s) in one of its partitions %s" % (p, o, first, name, ip, shards))
                break
        bound = MAX_BATCH * len(shards)
        if len(kill) > bound:
            problems.append("kill -9: %d records repeated, more than one commit batch (%d) per partition the "
                            "killed pod owned (%d): at most %d" % (len(kill), MAX_BATCH, len(shards), bound))
    elif kill:
        problems.append("duplicates during a kill -9 that did not happen: %s" % kill[:5])
    print("e2e: produced %d, processed %d, lost %d; duplicates: %d during graceful steps, %d after the kill -9 "
          "of %s (per partition %s; bound %d = kafka.commit.max-batch %d x %d partitions); rollout order %s"
          % (s["produced"], s["processed"], s["missing"], len(graceful), len(kill),
             story.victim[0] if story.victim else "-", json.dumps(per_part, sort_keys=True),
             MAX_BATCH * len(story.victim[2]) if story.victim else 0, MAX_BATCH,
             len(story.victim[2]) if story.victim else 0, story.rollout.get("order")))
    return problems


def main():
    if not UKKO_BIN or not os.access(UKKO_BIN, os.X_OK):
        print("SKIPPED: UKKO_BIN is not set to a built ukko (ctest sets it; by hand: UKKO_BIN=build/ukko "
              "python3 %s)" % os.path.relpath(__file__))
        return 0
    if shutil.which("kubectl") is None:
        print("SKIPPED: kubectl is not installed (scripts/install-kubectl.sh builds it)")
        return 0
    if shutil.which("kcat") is None:
        print("SKIPPED: kcat is not installed (the orders' producer and readers; scripts/install-deps.sh)")
        return 0
    args = demo.parse_args(["--ukko", UKKO_BIN, "--pod-addresses", ADDRESSES, "--hold", "3",
                            "--rate", "200", "--interval", "1"])
    try:
        rig = KafkaRig(topics={demo.TOPIC: demo.PARTITIONS, demo.OUT_TOPIC: demo.PARTITIONS, "orders.dlq": 1})
        rig.start()
    except KafkaUnavailable as e:
        print("SKIPPED: no real Kafka (%s)" % e.reason)
        return 0
    try:
        story = KubectlStory(args, rig.bootstrap)
        code = story.run()
        problems = check_results(story, code)
    finally:
        rig.stop()
    for p in problems:
        print("FAILED: " + p)
    if not problems:
        print("PASSED: kubectl apply, scale 5, delete pod, rollout restart, kill -9, scale 2 on a real broker: "
              "nothing lost, no duplicate but the kill -9's, within its bound")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
