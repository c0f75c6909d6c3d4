"""`milestones publish` at the command line's edges: stdin closed, Ctrl-C while reading (one line on
stderr and an exit status, never a traceback). Dry runs: no broker."""
import subprocess
import sys

import pytest

from milestone_stream import cli

from support import pipes

LINE = (b'{"account_id": "acme", "metric": "emails_sent", "value": 5, '
        b'"occurred_at": "2026-11-24T12:00:00Z", "source": "platform.mailer"}\n')


def test_a_closed_stdin_is_one_clear_line():
    run = subprocess.run([sys.executable, "-m", "milestone_stream.cli", "publish", "--dry-run", "-"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: __import__("os").close(0))
    assert run.returncode == 2, run.stderr
    assert "cannot read stdin: it is closed" in run.stderr and "Traceback" not in run.stderr


def test_ctrl_c_while_publishing_is_reported_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]):
    pipes.stdin(monkeypatch, 50, lambda n: LINE)
    assert cli.main(["publish", "--dry-run", "-"]) == 130
    assert "interrupted: nothing was sent (dry run)" in capsys.readouterr().err


def test_deadletter_since_is_utc_without_an_offset_and_a_bad_time_is_one_line():
    from datetime import UTC, datetime

    assert cli._instant("--since", "2026-11-25T09:00") == datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert cli._instant("--since", "2026-11-25T10:00+01:00") == datetime(2026, 11, 25, 9, tzinfo=UTC)
    with pytest.raises(cli.ConfigError, match="--since 'yesterday' is not an ISO-8601 time"):
        cli._instant("--since", "yesterday")
