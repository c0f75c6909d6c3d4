"""`milestones up`: the embedded default, for a first look and for demos.

Why one command: a new user sees the whole loop — a local broker (unless KAFKA_BOOTSTRAP_SERVERS),
an SMTP catcher writing .eml files, the worker (detector and drafter), the approval UI, the sender
(and the Gainsight stage when MILESTONES_GAINSIGHT_URL is set) and a sample data set — with
milestones, the UI's sign-in link and each email printed as they come.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames, ensure_topics


def up(exit_after: float | None, require_bootstrap: Callable[[Settings], str]) -> int:
    import secrets

    from milestone_stream.dev.catcher import start_catcher
    from milestone_stream.dev.kafka_local import LocalKafka, _port_free, free_port
    from milestone_stream.dev.watch import watch_milestones
    from milestone_stream.sinks.approvals.links import sign_in_link
    from milestone_stream.sinks.gainsight.config import GainsightSettings

    s = Settings.from_env()
    # a bad Gainsight setting is one line before anything starts
    stages = ("worker", "ui", "sender") + (("gainsight",) if GainsightSettings.from_env().enabled else ())
    if s.bootstrap_servers:
        require_bootstrap(s)  # an unreachable cluster is one line, before anything is started
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop cleans up like Ctrl-C: no orphaned children
    env = dict(os.environ)
    env.setdefault("MILESTONES_SECRET", secrets.token_urlsafe(32))  # this run's; set your own to keep links valid
    env.setdefault("MILESTONES_GATHER_SECONDS", "3")
    if "MILESTONES_UI_PORT" not in env:
        env["MILESTONES_UI_PORT"] = str(8080 if _port_free(8080) else free_port())
    env.setdefault("MILESTONES_UI_URL", f"http://127.0.0.1:{env['MILESTONES_UI_PORT']}")
    kafka = catcher = None
    children: list[subprocess.Popen] = []
    activity = [0.0]
    try:
        if not s.bootstrap_servers:
            kafka = LocalKafka(s.data_dir / "kafka")
            print("starting a local Apache Kafka broker ...", flush=True)
            kafka.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
            print(f"broker ready at {kafka.bootstrap_servers} (log: {kafka.log_file})", flush=True)
        if "MILESTONES_SMTP_HOST" not in env:
            outbox = Path(s.data_dir) / "outbox"
            env["MILESTONES_SMTP_HOST"], env["MILESTONES_SMTP_PORT"] = "127.0.0.1", str(free_port())

            def landed(path: Path) -> None:
                activity[0] = time.monotonic()
                print(f"  email      saved to {path}", flush=True)

            catcher = start_catcher(outbox, port=int(env["MILESTONES_SMTP_PORT"]), on_message=landed)
            print(f"SMTP catcher on 127.0.0.1:{env['MILESTONES_SMTP_PORT']}: emails are saved as .eml in {outbox}/",
                  flush=True)
        asyncio.run(ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"], TopicNames(s.topic_prefix).all(), s.partitions,
                                  s.replication_factor))
        for name in stages:
            log_file = Path(s.data_dir) / f"{name}.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            children.append(subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", name], env=env,
                                             stdout=open(log_file, "ab"), stderr=subprocess.STDOUT))
            print(f"{name} started (pid {children[-1].pid}, log: {log_file})", flush=True)
        subprocess.run([sys.executable, "-m", "milestone_stream.cli", "publish-sample"], env=env, check=True)
        print(f"\napproval UI for the sample CSM (csm@milestone.example) — open this sign-in link:\n  "
              f"{sign_in_link(Settings.from_env(env), 'csm@milestone.example')}\n"
              "each approval request also arrives as a notification email with one-tap links (see the outbox)\n",
              flush=True)
        asyncio.run(watch_milestones(env["KAFKA_BOOTSTRAP_SERVERS"], Settings.from_env(env), exit_after=exit_after,
                                     alive=lambda: all(c.poll() is None for c in children),
                                     last_activity=lambda: activity[0]))
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if catcher:
            catcher.stop()
        if kafka:
            kafka.stop()
        print("stopped", flush=True)
    return 0




def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
