"""The CLI against real processes: an unreachable Kafka is one line, and `milestones broker` leaves no java.

Why: an operator who starts a command against the wrong address must read the cause at once, not a
30-line aiokafka traceback (or a Faust worker retrying forever); and a supervisor's SIGTERM to
`milestones broker` must not leave the broker's JVM running (java runs in its own session, so the
signal reaches only the launcher).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.helpers import REPO

SECRET = "s" * 40
BOUND = 20.0  # seconds a command may take to give up


def closed_port() -> int:
    """A loopback port that was just free: bound, then closed, so a connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp_path: Path, bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILESTONES_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, MILESTONES_DATA_DIR=str(tmp_path / "var"),
               MILESTONES_SECRET=SECRET, MILESTONES_WEB_PORT="0",
               MILESTONES_CACHE_DIR=str(REPO / ".cache"))
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=BOUND)
    return result, time.monotonic() - started


def assert_one_line(result: subprocess.CompletedProcess, elapsed: float, *names: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert elapsed <= BOUND
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


COMMANDS = [
    ["worker"], ["ui"], ["sender"], ["topics"], ["lag"], ["lag", "--watch", "1"],
    ["deadletter", "list"], ["deadletter", "replay", "0:1"], ["resync"], ["publish-sample"],
    ["up", "--exit-after", "5"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_refused_connection_is_one_line(args, tmp_path):
    port = closed_port()
    result, elapsed = run_cli(args, env_for(tmp_path, f"127.0.0.1:{port}"), tmp_path)
    line = assert_one_line(result, elapsed, f"127.0.0.1:{port}", "connection refused")
    assert line.startswith("milestones: cannot reach Kafka at"), line


@pytest.mark.parametrize("args", [["worker"], ["topics"], ["ui"]], ids=lambda a: " ".join(a))
def test_unknown_host_is_one_line(args, tmp_path):
    result, elapsed = run_cli(args, env_for(tmp_path, "kafka.no-such-host.invalid:9092"), tmp_path)
    assert_one_line(result, elapsed, "kafka.no-such-host.invalid:9092", "not found")


def test_a_listener_that_is_not_kafka_is_one_line_within_the_bound(tmp_path):
    """A port that accepts connections but never answers: the metadata request's bound applies."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        result, elapsed = run_cli(["topics"], env_for(tmp_path, address), tmp_path)
    assert_one_line(result, elapsed, address, "does not answer")


def test_a_reachable_broker_passes_the_check(kafka_bootstrap, tmp_path):
    """Positive control on the shared broker: a read-only command gets past the pre-flight."""
    result, _ = run_cli(["lag"], env_for(tmp_path, kafka_bootstrap), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "total lag" in result.stdout


# -- `milestones broker` and its java child ---------------------------------------------------------

def until(condition, timeout: float, what: str):
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def broker_java(data_dir: Path) -> int | None:
    """The pid of the running `kafka.Kafka` JVM whose command line names `data_dir`, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (state != "Z" and Path(argv[0].decode(errors="replace")).name == "java"
                and b"kafka.Kafka" in argv and any(str(data_dir).encode() in a for a in argv)):
            return int(entry.name)
    return None


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited; only its parent's wait is missing


def start_broker(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    data_dir = (tmp_path / "kafka").resolve()
    out = tmp_path / "broker.stdout"
    proc = subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "broker", "--data-dir", str(data_dir)],
                            env=env_for(tmp_path, ""), cwd=tmp_path, stdout=open(out, "w"),
                            stderr=subprocess.STDOUT)
    return proc, data_dir, out


def stop_leftovers(proc: subprocess.Popen, java: int | None) -> None:
    """After a failed assertion: our own processes, by pid, so a failure leaves no orphan either."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if java and not gone(java):
        os.kill(java, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_broker_stopped_by_a_signal_stops_its_java(signum, tmp_path):
    proc, data_dir, out = start_broker(tmp_path)
    java = None
    try:
        until(lambda: "KAFKA_BOOTSTRAP_SERVERS=" in out.read_text(), 120, "the broker's address line")
        java = until(lambda: broker_java(data_dir), 10, "the broker's java process")
        proc.send_signal(signum)
        until(lambda: proc.poll() is not None and gone(java), 60, "the launcher and java to exit")
        assert proc.returncode == 0, out.read_text()
        assert broker_java(data_dir) is None
    finally:
        stop_leftovers(proc, java)


def test_broker_terminated_while_starting_stops_its_java(tmp_path):
    """SIGTERM after java is started but before it answers: `LocalKafka.start` must stop it."""
    proc, data_dir, out = start_broker(tmp_path)
    java = None
    try:
        java = until(lambda: broker_java(data_dir), 120, "the broker's java process")
        proc.send_signal(signal.SIGTERM)
        until(lambda: proc.poll() is not None and gone(java), 60, "the launcher and java to exit")
        # Honest about what was tested: the address line is printed only once the broker answers.
        assert "KAFKA_BOOTSTRAP_SERVERS=" not in out.read_text(), "the broker was ready before the signal"
        assert broker_java(data_dir) is None
    finally:
        stop_leftovers(proc, java)
