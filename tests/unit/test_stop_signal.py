"""A SIGTERM while a service is still starting ends it with status 0, not killed by the signal (signals.py).

CI once stopped a worker that had not yet reached Faust's own handlers; it died by the signal (-15)."""
from __future__ import annotations

import signal
import subprocess
import sys

from milestone_stream import cli
from milestone_stream.signals import _exit_cleanly

STARTING = ("import sys; from milestone_stream.signals import exit_until_started; exit_until_started(); "
            "print('starting', flush=True); sys.stdin.read()")


def test_a_sigterm_while_starting_exits_with_status_0():
    proc = subprocess.Popen([sys.executable, "-c", STARTING], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"starting\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_the_services_take_sigterm_before_anything_else(tmp_path, monkeypatch):
    monkeypatch.setenv("MILESTONES_RULES", str(tmp_path / "missing.yaml"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["worker"]) == 2  # stops at the missing rules file, after the handler went in
        assert signal.getsignal(signal.SIGTERM) is _exit_cleanly
    finally:
        signal.signal(signal.SIGTERM, previous)

