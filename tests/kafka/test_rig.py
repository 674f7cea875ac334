"""The Kafka test rig itself (broker.sh through kafka_rig.py), as the tests that
lean on it use it: records survive kill -9 and restart on the same port, a
paused broker answers nothing until resumed, 3 nodes lose their leader and
keep every record, a rig whose owner dies is removed, and stop leaves no
process or folder. Broker on 127.0.4.2-3; kcat is the client. Prints
"SKIPPED: no real Kafka (why)" where no broker can run."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kafka_rig import BROKER_SH, KafkaRig, KafkaUnavailable  # noqa: E402


def wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def produce(k, topic, values, partition=None):
    args = ["-P", "-t", topic, "-X", "acks=all"] + (["-p", str(partition)] if partition is not None else [])
    p = k.kcat(*args, input="".join(v + "\n" for v in values))
    assert p.returncode == 0, f"kcat produce to {topic}: {p.stderr}"


def consume(k, topic):
    p = k.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n")
    assert p.returncode == 0, f"kcat consume {topic}: {p.stderr}"
    return p.stdout.split()


skip_reason = None


def setUpModule():
    global skip_reason
    p = subprocess.run([BROKER_SH, "fetch"], capture_output=True, text=True)
    if p.returncode == 3:
        skip_reason = p.stderr.strip().split("no real Kafka: ", 1)[-1]
        print(f"SKIPPED: no real Kafka ({skip_reason})", flush=True)


class Rig(unittest.TestCase):
    def setUp(self):
        if skip_reason:
            self.skipTest(f"SKIPPED: no real Kafka ({skip_reason})")

    def test_single_node_kill_restart_pause_stop(self):
        k = KafkaRig(host="127.0.4.2", topics={"rig-t": 3})
        try:
            k.start()
            self.assertEqual(k.status(), {1: "running"})
            values = [f"v{i}" for i in range(100)]
            produce(k, "rig-t", values, partition=1)

            # kill -9, then a start on the same data and port.
            pid = k.pid()
            before = k.bootstrap
            k.kill()
            self.assertFalse(running(pid), "the JVM still runs after kill")
            self.assertEqual(k.status(), {1: "down"})
            self.assertEqual(k.restart(), before, "restart moved the broker")
            self.assertEqual(consume(k, "rig-t"), values, "records lost across kill -9 + restart")

            # Paused: the port accepts, nothing answers; resumed: it answers again.
            k.pause()
            self.assertEqual(k.status(), {1: "paused"})
            p = k.kcat("-L", "-m", "2")
            self.assertNotEqual(p.returncode, 0, f"a paused broker gave metadata: {p.stdout}")
            k.resume()
            wait_for(lambda: k.kcat("-L", "-m", "2").returncode == 0, "metadata after resume")

            # SIGTERM: a controlled shutdown, then back.
            k.term()
            self.assertEqual(k.status(), {1: "down"})
            k.restart()
            self.assertEqual(consume(k, "rig-t"), values)
        finally:
            state, pid = k.state, (k.pid() if k.bootstrap else None)
            k.stop()
        self.assertFalse(os.path.exists(state), f"stop left {state}")
        if pid:
            self.assertFalse(running(pid), f"stop left the JVM {pid}")

    def test_three_nodes_lose_a_leader_and_keep_every_record(self):
        with KafkaRig(brokers=3, host="127.0.4.3", topics={"rig-r3": 3}) as k:
            self.assertEqual(len(k.bootstrap.split(",")), 3)
            values = [f"r{i}" for i in range(300)]
            produce(k, "rig-r3", values)
            leader = k.leader("rig-r3", 0)
            self.assertIn(leader, (1, 2, 3))
            k.kill(leader)
            now = wait_for(lambda: (lambda n: n if n not in (-1, leader) else None)(
                k.leader("rig-r3", 0)), f"a new leader of rig-r3 [0] after node {leader} died")
            self.assertNotEqual(now, leader)
            self.assertEqual(sorted(consume(k, "rig-r3")), sorted(values),
                             "records lost with the leader (replication 3, acks=all)")
            k.restart(leader)
            self.assertEqual(set(k.status().values()), {"running"})

    def test_a_rig_whose_owner_dies_is_removed(self):
        owner = subprocess.Popen(["sleep", "600"])
        state = None
        try:
            k = KafkaRig(host="127.0.4.2")
            k.state = state = tempfile.mkdtemp(prefix="ukko-kafka-rig-")
            out = subprocess.run([BROKER_SH, "--state", state, "--host", "127.0.4.2",
                                  "--owner", str(owner.pid), "start"],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            pid = k.pid()
            owner.kill()
            owner.wait()
            wait_for(lambda: not running(pid) and not os.path.exists(state),
                     "the rig's end after its owner died")
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.wait()
            if state and os.path.exists(state):
                subprocess.run([BROKER_SH, "--state", state, "stop"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
