"""Helpers shared by the Python tests that drive vdp-train: PASS/FAIL lines with a failure count,
and running vdp-train (or another vdp program) at W=1 or under mpirun."""
import subprocess
import sys


class Checks:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        print(("PASS " if ok else "FAIL ") + what, flush=True)
        self.failures += 0 if ok else 1

    def finish(self, name):
        print(f"{name}: {self.failures} failed")
        sys.exit(1 if self.failures else 0)


def run(program, args, world=1, mpirun="mpirun"):
    """Runs `program args` at world size 1, or under mpirun with `world` ranks; returns the
    CompletedProcess with text stdout/stderr."""
    cmd = [program] + list(args)
    if world > 1:
        cmd = [mpirun, "-np", str(world), "--oversubscribe", "--bind-to", "none"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True)
