#!/usr/bin/env python3
"""README's first command, without its install and build steps: scripts/demo.sh
--no-build runs the emulator with its controller and 3 ukko pods, prints its
table, and stops everything, after --seconds or at Ctrl-C. Pods on
127.0.0.120-127.0.0.139 (inside this folder's 127.0.0.100-199).

The ukko program comes from UKKO_BIN (ctest sets it); skipped without it.

    UKKO_BIN=build/ukko python3 tests/emulator/test_demo.py [-v]
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_controller import KUBECTL, UKKO_BIN, http_get, need_ukko, processes_mentioning  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEMO = os.path.join(REPO, "scripts", "demo.sh")
ADDRESSES = ["127.0.0.120", "127.0.0.121", "127.0.0.122"]


class DemoTest(unittest.TestCase):
    def setUp(self):
        need_ukko()
        # Everything the demo makes goes under this directory (TMPDIR), so a
        # process left behind would name it in its command line or environment.
        self.tmp = tempfile.mkdtemp(prefix="ukko-demo-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.env = dict(os.environ, TMPDIR=self.tmp)
        self.env.pop("KUBECONFIG", None)
        self.cmd = ["bash", DEMO, "--no-build", "--ukko", UKKO_BIN,
                    "--pod-addresses", "127.0.0.120-127.0.0.139"]

    def assert_nothing_left(self):
        self.assertEqual(processes_mentioning(self.tmp), [], "no process of the demo is left")
        for ip in ADDRESSES:
            self.assertIsNone(http_get(ip, "/alive")[0], "nothing serves on %s:8558 any more" % ip)
        self.assertEqual(os.listdir(self.tmp), [], "the demo removes its temporary directory")

    def test_runs_for_some_seconds_and_stops_cleanly(self):
        proc = subprocess.run(self.cmd + ["--seconds", "10"], env=self.env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        out = proc.stdout
        self.assertEqual(proc.returncode, 0, "demo.sh exits 0; stdout:\n%s\nstderr:\n%s" % (out, proc.stderr))
        # The pods find each other through the API and make one cluster.
        self.assertIn("3 Running, 3 ready", out, "every pod turns ready (issue 5's bootstrap)")
        self.assertRegex(out, r"ukko-0 +127\.0\.0\.120:7355 Up, 127\.0\.0\.121:7355 Up, "
                              r"127\.0\.0\.122:7355 Up", "one cluster of the three, all Up")
        for i, ip in enumerate(ADDRESSES):
            self.assertRegex(out, r"ukko-%d\s+%s\s+Running\s" % (i, ip.replace(".", r"\.")),
                             "each pod is listed Running on its address")
        self.assertIn("POD", out)
        self.assertIn("/ready", out)
        self.assertIn("nothing left running", out)
        if KUBECTL:
            self.assertIn("$ kubectl get pods -o wide", out)
            self.assertRegex(out, r"NAME\s+READY\s+STATUS")
        self.assert_nothing_left()

    def test_ctrl_c_stops_everything(self):
        # A terminal's Ctrl-C: SIGINT to the foreground process group (the
        # demo and the emulator; the pods run in sessions of their own).
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        seen = ""
        deadline = time.monotonic() + 60
        while "StatefulSet ukko: 3 pod(s), 3 Running" not in seen:
            line = proc.stdout.readline()
            self.assertTrue(line and time.monotonic() < deadline,
                            "the demo shows 3 Running pods (output so far:\n%s)" % seen)
            seen += line
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, "Ctrl-C ends the demo with 0; output:\n" + seen + rest)
        self.assertIn("stopping", rest)
        self.assertIn("nothing left running", rest)
        self.assert_nothing_left()


if __name__ == "__main__":
    unittest.main()
