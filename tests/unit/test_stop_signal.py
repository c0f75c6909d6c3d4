"""A SIGTERM while a service is still starting ends it with status 0, not killed by the signal (signals.py).

CI once stopped a worker that had not yet reached Faust's own handlers; it died by the signal (-15)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from milestone_stream import cli
from milestone_stream.signals import _exit_cleanly, exit_until_started, stop_on_signals

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


@pytest.mark.parametrize("service", sorted(cli._SERVICES))
def test_the_services_take_sigterm_before_anything_else(service, tmp_path, monkeypatch):
    monkeypatch.setenv("MILESTONES_RULES", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("MILESTONES_GUARANTEE", "not-a-guarantee")  # every service stops at its config
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main([service]) == 2
        assert signal.getsignal(signal.SIGTERM) is _exit_cleanly
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_a_running_service_hands_sigterm_to_its_loop():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        exit_until_started()
        stop = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)  # the stop event, not the early exit
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGTERM, previous)


STUCK = ("import sys, threading; from milestone_stream import logs; from milestone_stream.signals import exit_within; "
         "logs.configure('info'); never = threading.Event(); "
         "threading.Thread(target=never.wait, name='stuck-consumer').start(); "  # not a daemon: exit waits for it
         "exit_within({seconds}, lambda: {status}); sys.exit({status})")


@pytest.mark.parametrize("status", [0, 3])
def test_a_stopped_service_exits_with_its_status_past_a_thread_that_never_ends(status):
    done = subprocess.run([sys.executable, "-c", STUCK.format(seconds=0.5, status=status)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert "did not stop and exit within 0.5 s" in done.stderr
    assert "thread stuck-consumer" in done.stderr and "in wait" in done.stderr  # the thread named, with its stack


def test_a_service_that_exits_on_its_own_is_left_to_exit():
    done = subprocess.run([sys.executable, "-c", "import sys; from milestone_stream.signals import exit_within; "
                           "exit_within(30, lambda: 0); sys.exit(4)"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 4  # its own status, at once: the timer is a daemon and holds nothing
    assert "did not stop" not in done.stderr


async def test_the_worker_arms_its_stop_deadline_as_its_stop_begins(monkeypatch):
    """CI saw Faust's stop wait for good on aiokafka's coordinator after a rebalance reached the stopping
    worker: the deadline starts with the stop, not after it (faust_compat/worker.py). Its status is read when
    it fires: 0 for a requested stop, 1 once the worker has crashed (before or during the stop)."""
    import faust

    from milestone_stream import faust_compat, signals

    armed: list[tuple[float, object]] = []
    monkeypatch.setattr(signals, "exit_within", lambda seconds, status: armed.append((seconds, status)))
    app = faust.App("stop-deadline-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = faust_compat.worker(app, loop=asyncio.get_running_loop(), loglevel="WARNING", stop_seconds=7)
    await worker.on_stop()
    [(seconds, status)] = armed
    assert seconds == 7 and status() == 0
    worker.crash_reason = RuntimeError("an agent crashed while stopping")
    assert status() == 1
    unbounded = faust_compat.worker(app, loop=asyncio.get_running_loop(), loglevel="WARNING")
    await unbounded.on_stop()
    assert len(armed) == 1  # no deadline unless asked (bench/faust_floor.py)


def test_a_deadline_status_can_be_read_when_it_fires():
    done = subprocess.run([sys.executable, "-c", "import sys, threading; from milestone_stream.signals import "
                           "exit_within; state = [0]; exit_within(0.3, lambda: state[0]); state[0] = 5; "
                           "threading.Event().wait()"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 5
