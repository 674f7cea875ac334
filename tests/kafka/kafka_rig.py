"""kafka_rig.py: a real Apache Kafka broker for Python tests (stdlib only).

The Python face of tests/kafka/broker.sh: KRaft, 1 or N nodes on loopback,
jars assembled from Maven on first use. A rig lives in its own temp folder
and is stopped by broker.sh's watchdog if this process dies without stop().

    from kafka_rig import KafkaRig, KafkaUnavailable
    try:
        with KafkaRig(topics={"orders": 12}) as k:
            run_something(bootstrap=k.bootstrap)
            k.pause(); ...; k.resume()
    except KafkaUnavailable as e:
        print(f"SKIPPED: no real Kafka ({e.reason})")
"""
import os
import shutil
import subprocess
import tempfile

BROKER_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broker.sh")


class KafkaUnavailable(Exception):
    """No real Kafka can run here: no Java 17, Maven or kcat, or the jars
    cannot be fetched. `reason` says which; tests print it as SKIPPED."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class KafkaRigError(RuntimeError):
    """broker.sh failed; the message ends with what it said."""


class KafkaRig:
    """One rig. brokers: nodes (each broker+controller); topics: {name:
    partitions} created at start; props: extra server.properties lines
    "key=value"; host: the loopback address (127.0.4.x belongs to Kafka
    tests); timeout: start/restart deadline in seconds."""

    def __init__(self, brokers=1, host="127.0.4.1", topics=None, props=(), heap=None,
                 timeout=None, version=None, state=None):
        self.brokers = brokers
        self.host = host
        self.topics = dict(topics or {})
        self.props = list(props)
        self.heap = heap
        self.timeout = timeout
        self.version = version
        self.state = state
        self.bootstrap = None
        self._owns_state = False

    # ---- lifetime -------------------------------------------------------------

    def start(self):
        """Starts the rig and waits until it answers metadata; creates the
        topics. Returns the bootstrap servers. Raises KafkaUnavailable or
        KafkaRigError."""
        if self.state is None:
            self.state = tempfile.mkdtemp(prefix="ukko-kafka-rig-")
            self._owns_state = True
        opts = ["--brokers", str(self.brokers), "--host", self.host,
                "--owner", str(os.getpid())]
        for p in self.props:
            opts += ["--prop", p]
        try:
            self.bootstrap = self._run("start", opts=opts).strip()
            for name, parts in self.topics.items():
                self.topic(name, parts)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self):
        """Kills the nodes and removes the state folder (data included)."""
        if self.state is None:
            return
        if os.path.exists(self.state):
            self._run("stop", check=False)
        if self._owns_state:
            shutil.rmtree(self.state, ignore_errors=True)
        self.bootstrap = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- topics and clients ---------------------------------------------------

    def topic(self, name, partitions, replication=None):
        """Creates a topic (left alone if it exists) and waits for its leaders."""
        self._run("topic", name, str(partitions), str(replication or self.brokers))

    def leader(self, topic, partition=0):
        """The node id leading the partition (-1 while it has none)."""
        return int(self._run("leader", topic, str(partition)).strip())

    def produce_java(self, topic, records):
        """Produces (key, value) pairs with Kafka's own Java producer."""
        lines = "".join(f"{k}\t{v}\n" for k, v in records)
        self._run("produce", topic, input=lines)

    def java(self, main_class, *args):
        """Runs a main class of Kafka's jars; returns its stdout."""
        return self._run("java", main_class, *args)

    def kcat(self, *args, input=None, timeout=60):
        """Runs kcat against the rig; returns the CompletedProcess."""
        return subprocess.run(["kcat", "-b", self.bootstrap, *args], input=input,
                              capture_output=True, text=True, timeout=timeout)

    # ---- faults -----------------------------------------------------------------

    def pause(self, node=1):
        """SIGSTOP: the node keeps its sockets but answers nothing."""
        self._run("pause", str(node))

    def resume(self, node=1):
        self._run("resume", str(node))

    def kill(self, node=1):
        """SIGKILL; data and port are kept for restart()."""
        self._run("kill", str(node))

    def term(self, node=1):
        """SIGTERM (controlled shutdown), waiting for the exit."""
        self._run("term", str(node))

    def restart(self, node=1):
        """Starts the node again on its data and port; waits for metadata."""
        return self._run("restart", str(node)).strip()

    def status(self):
        """{node: "running" | "paused" | "down"}."""
        out = self._run("status", check=False)
        return {int(f[1]): f[2] for f in (line.split() for line in out.splitlines())
                if len(f) > 2 and f[0] == "node"}

    def pid(self, node=1):
        with open(os.path.join(self.state, f"node-{node}", "pid")) as f:
            return int(f.read().strip())

    def log_path(self, node=1):
        return os.path.join(self.state, f"node-{node}", "broker.log")

    # ---- broker.sh ------------------------------------------------------------

    def _run(self, cmd, *args, opts=(), input=None, check=True):
        env = dict(os.environ)
        if self.heap:
            env["UKKO_KAFKA_HEAP"] = str(self.heap)
        if self.timeout:
            env["UKKO_KAFKA_START_TIMEOUT"] = str(self.timeout)
        if self.version:
            env["UKKO_KAFKA_VERSION"] = self.version
        argv = [BROKER_SH, "--state", self.state, *opts, cmd, *args]
        p = subprocess.run(argv, input=input, capture_output=True, text=True, env=env)
        if p.returncode == 3:
            why = next((line.split("no real Kafka: ", 1)[1] for line in p.stderr.splitlines()
                        if "no real Kafka: " in line), p.stderr.strip())
            raise KafkaUnavailable(why)
        if check and p.returncode != 0:
            raise KafkaRigError(f"broker.sh {cmd} {' '.join(args)} exited {p.returncode}: "
                                f"{p.stderr.strip()[-3000:]}")
        return p.stdout
