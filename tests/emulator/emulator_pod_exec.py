"""Start a pod's process so that it dies with the emulator: the kubelet's exec.

    python3 -I -S emulator_pod_exec.py PARENT_PID PROGRAM [ARGS...]

Asks the kernel to send SIGKILL to this process when the thread that started
it ends (prctl PR_SET_PDEATHSIG; the setting survives execve), checks that the
parent is still PARENT_PID (it may have died before the prctl), and executes
PROGRAM in its place. The emulator's kubelet starts each pod's process through
this, from the pod's worker thread, which lives as long as the process: so a
killed emulator (even with SIGKILL) leaves no ukko process behind. An orderly
emulator exit still stops every pod with SIGTERM first.
"""

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1
SIGKILL = 9


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: emulator_pod_exec.py PARENT_PID PROGRAM [ARGS...]\n")
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
        sys.stderr.write("emulator_pod_exec: prctl(PR_SET_PDEATHSIG): %s\n"
                         % os.strerror(ctypes.get_errno()))
        return 1
    if os.getppid() != int(argv[1]):
        return 1  # the emulator is already gone: start nothing
    try:
        os.execv(argv[2], argv[2:])
    except OSError as e:
        sys.stderr.write("emulator_pod_exec: cannot execute %s: %s\n" % (argv[2], e))
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
