#!/usr/bin/env python3
"""README's first command, without its install and build steps: scripts/demo.sh
--no-build runs `ukko dev-kafka`, the emulator with a StatefulSet of 3
`ukko run --app orders` pods, orders produced with kcat, and its live view;
then scales to 5, kills one pod with SIGKILL, scales to 2, and prints the
totals. Checked here as a user sees it: one cluster, every pod ready, orders
processed, lost 0, exit 0, and no process left; also ended early by --seconds
and by Ctrl-C. Pods on 127.0.0.120-127.0.0.139 (inside this folder's
127.0.0.100-199).

The ukko program comes from UKKO_BIN (ctest sets it); skipped without it, and
without kcat (the demo's producer and readers; scripts/install-deps.sh
installs it). No assertion is about timing: the demo's steps wait for states.

    UKKO_BIN=build/ukko python3 tests/emulator/test_demo.py [-v]
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_controller import UKKO_BIN, http_get, need_ukko, processes_mentioning  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEMO = os.path.join(REPO, "scripts", "demo.sh")
ADDRESSES = ["127.0.0.%d" % i for i in range(120, 125)]


def number(text):
    return int(text.replace(",", ""))


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

    def run_demo(self, *extra):
        proc = subprocess.run(self.cmd + list(extra), env=self.env, capture_output=True,
                              text=True, timeout=240, stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, "demo.sh exits 0; stdout:\n%s\nstderr:\n%s"
                         % (proc.stdout, proc.stderr))
        return proc.stdout

    def assert_nothing_left(self):
        self.assertEqual(processes_mentioning(self.tmp), [], "no process of the demo is left")
        for ip in ADDRESSES:
            self.assertIsNone(http_get(ip, "/alive")[0], "nothing serves on %s:8558 any more" % ip)
        self.assertEqual(os.listdir(self.tmp), [], "the demo removes its temporary directory")

    def assert_started(self, out):
        """3 pods ready in one cluster, orders processed, shards on every pod."""
        self.assertRegex(out, r"3 pods ready \(/ready 200: members of one cluster\)")
        self.assertRegex(out, r"started: 3 pods ready, one cluster, each of the 12 shards on one pod")
        self.assertRegex(out, r"first order processed [\d.]+ s after the start")
        self.assertRegex(out, r"\nmembers: ukko-0 Up, ukko-1 Up, ukko-2 Up \(leader ukko-\d\)\n",
                         "the live view shows the members")
        self.assertRegex(out, r"\n\+\d+s  3 pods, 3 ready, one cluster \| orders: [\d,]+ produced, [\d,]+ processed",
                         "the live view's head line")
        for i, ip in enumerate(ADDRESSES[:3]):
            self.assertRegex(out, r"\nukko-%d +Running +1/1 +0 +Up +\d" % i,
                             "ukko-%d is listed Running, ready, Up, owning shards" % i)

    def assert_totals(self, out):
        """Every order produced was processed, none lost; returns the totals."""
        m = re.search(r"produced +([\d,]+) orders", out)
        self.assertIsNotNone(m, "the totals name the orders produced:\n" + out)
        produced = number(m.group(1))
        processed = number(re.search(r"processed +([\d,]+) \(distinct source partition and offset", out).group(1))
        lost = re.search(r"\n  lost +(.*)", out).group(1)
        dups = number(re.search(r"duplicates +([\d,]+)", out).group(1))
        self.assertGreater(produced, 0, "orders were produced")
        self.assertEqual(processed, produced, "every order produced was processed")
        self.assertEqual(lost, "0", "lost 0")
        self.assertIn("done; nothing left running.", out)
        return produced, processed, dups, out

    def test_the_whole_story(self):
        out = self.run_demo()
        self.assert_started(out)
        self.assertIn("$ kubectl scale statefulset ukko --replicas=5   -> statefulset.apps/ukko scaled", out)
        self.assertRegex(out, r"scaled to 5: 5 pods ready, one cluster, each of the 12 shards on one pod")
        self.assertRegex(out, r"\$ kill -9 \d+ +\(ukko-1's process")
        self.assertRegex(out, r"ukko-1 runs again \(restart 1, new process \d+\)")
        self.assertRegex(out, r"ukko-1 killed and back: 5 pods ready, one cluster")
        self.assertIn("$ kubectl scale statefulset ukko --replicas=2   -> statefulset.apps/ukko scaled", out)
        self.assertRegex(out, r"scaled to 2: 2 pods ready, one cluster, each of the 12 shards on one pod "
                              r"\([\d.]+ s\): ukko-0 [\d,]+, ukko-1 [\d,]+\n")
        _, _, dups, _ = self.assert_totals(out)
        if dups:
            # At-least-once: only the pod killed with -9 leaves records to be
            # processed again; a scale-up or a graceful leave hands shards off.
            self.assertRegex(out, r"duplicates +[\d,]+ \([\d,]+ during kill -9\)\n",
                             "duplicates come only from the kill -9")
        self.assert_nothing_left()

    def test_seconds_ends_it_early_with_the_totals(self):
        out = self.run_demo("--seconds", "8")
        self.assertIn("--seconds 8: the story ends here", out)
        self.assert_started(out)
        self.assert_totals(out)
        self.assertRegex(out, r"duplicates +0\n", "no duplicates without a kill")
        self.assert_nothing_left()

    def test_ctrl_c_stops_everything(self):
        # A terminal's Ctrl-C: SIGINT to the foreground process group (the
        # demo; what it starts runs in sessions of its own, and it stops them).
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        seen = ""
        deadline = time.monotonic() + 60
        while "first order processed" not in seen:
            line = proc.stdout.readline()
            self.assertTrue(line and time.monotonic() < deadline,
                            "the demo processes orders (output so far:\n%s)" % seen)
            seen += line
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, "Ctrl-C ends the demo with 0; output:\n" + seen + rest)
        self.assertIn("Ctrl-C", rest)
        self.assertIn("stopping", rest)
        self.assert_totals(seen + rest)
        self.assert_nothing_left()


if __name__ == "__main__":
    if not shutil.which("kcat"):
        print("SKIPPED: kcat is not installed (the demo's producer and readers; scripts/install-deps.sh "
              "installs it)")
        sys.exit(0)
    unittest.main()
