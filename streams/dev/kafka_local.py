"""A real single-node Apache Kafka (KRaft) without Docker: jars from Maven Central, run by `java`.

Why: the project must run where only Java and Maven are installed. The broker is the same Apache
Kafka a production cluster runs; only its packaging differs.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn

# Kafka 3.9 is the last line that keeps the older protocol versions Faust's client stack
# (aiokafka) negotiates; the detection tests run a full Faust app (assignor, tables, changelogs)
# on it. See README "Broker version".
KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"
SLF4J_VERSION = "1.7.36"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>milestone-stream</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
"""


# What stops `milestones broker`: Ctrl-C, a supervisor's stop, a closed terminal.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class BrokerError(RuntimeError):
    """The local broker could not be resolved, formatted or started."""


def cache_dir() -> Path:
    """Where jars are kept between runs (git ignores `.cache/`)."""
    return Path(os.environ.get("MILESTONES_CACHE_DIR", Path.cwd() / ".cache")).resolve()


def resolve_classpath() -> str:
    """Return the broker classpath: `KAFKA_HOME/libs` if set, else jars resolved once by Maven."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise BrokerError(f"KAFKA_HOME={home} has no libs/ folder (expected an unpacked Apache Kafka)")
        return f"{libs}/*"
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / ".complete").exists():
        _maven_resolve(libs)
    return f"{libs}/*"


def _maven_resolve(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars; install it or set KAFKA_HOME")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION))
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {libs} (once)", file=sys.stderr)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise BrokerError(f"Maven could not resolve Kafka {KAFKA_VERSION}:\n"
                          f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (libs / ".complete").write_text(KAFKA_VERSION)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM for a clean shutdown, SIGKILL if the process has not gone within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class LocalKafka:
    """One KRaft node (broker + controller) on loopback, with its data in `data_dir`.

    Restarting on the same `data_dir` keeps topics and offsets (and the same ports when free).
    """

    data_dir: Path
    heap: str = "1g"
    process: subprocess.Popen | None = field(default=None, init=False)
    port: int = field(default=0, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def start(self, timeout: float = 90.0) -> LocalKafka:
        """Start the broker and return once it answers.

        Why the try: java runs in its own session (so a terminal's Ctrl-C reaches only us and we
        stop it in order), hence nothing else stops it; whatever interrupts the start (a signal
        turned into KeyboardInterrupt, a time-out) must stop it here, since `__exit__` is not
        called when `__enter__` raises.
        """
        classpath = resolve_classpath()
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        self.port = state["port"]
        props = self._write_config(state)
        try:
            if not (self.data_dir / "kraft" / "meta.properties").exists():
                self._java(classpath, "kafka.tools.StorageTool", "format", "-t", state["cluster_id"],
                           "-c", str(props), "--ignore-formatted", wait=True)
            self._java(classpath, "kafka.Kafka", str(props), wait=False)  # sets self.process
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM for a clean shutdown; SIGKILL if the broker is stuck.

        The process is forgotten only once it is gone, so a second call after an interrupted one
        (a signal during the wait) still stops it.
        """
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _load_state(self) -> dict:
        """Cluster id and ports are chosen once per data dir, so a restart finds its own log."""
        path = self.data_dir / "launcher.json"
        state = json.loads(path.read_text()) if path.exists() else {}
        if not state.get("cluster_id") or state["cluster_id"].startswith("-"):  # such a one never formatted
            state["cluster_id"] = _cluster_id()
        for key in ("port", "controller_port"):
            if not state.get(key) or not _port_free(state[key]):
                state[key] = free_port()
        path.write_text(json.dumps(state))
        return state

    def _write_config(self, state: dict) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{state['controller_port']}",
            "listeners": f"PLAINTEXT://127.0.0.1:{state['port']},CONTROLLER://127.0.0.1:{state['controller_port']}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{state['port']}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft"),
            # One node: every internal topic has one replica and needs one in sync.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created explicitly through the admin API, with their partition counts.
            "auto.create.topics.enable": "false",
            "log.flush.interval.messages": str(2**62),
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j.properties").write_text(_LOG4J.format(log=self.log_file))
        return path

    def _java(self, classpath: str, main: str, *args: str, wait: bool) -> subprocess.Popen[bytes] | None:
        java_home = os.environ.get("JAVA_HOME")
        java = shutil.which("java", path=os.path.join(java_home, "bin")) if java_home else shutil.which("java")
        if java is None:
            raise BrokerError("java is needed to run the local Kafka broker (Java 17+)")
        cmd = [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
               f"-Dkafka.logs.dir={self.data_dir}", "-cp", classpath, main, *args]
        out = open(self.data_dir / "broker.out", "ab")
        if wait:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                raise BrokerError(f"{main} failed; see {self.data_dir / 'broker.out'}")
            return None
        # Stop signals are held back from java's fork until `self.process` names it: a signal turned
        # into KeyboardInterrupt inside Popen, or just after it, would otherwise leave a JVM that no
        # `stop` knows of. The child gets the original signal mask back before it runs java.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, held))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return self.process

    def running(self) -> subprocess.Popen[bytes]:
        """The broker's process, once `start` has launched it."""
        if self.process is None:
            raise BrokerError("the local broker is not running")
        return self.process

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running().poll() is not None:
                raise BrokerError(f"the broker exited with {self.running().returncode}; see {self.log_file}")
            if asyncio.run(answers_metadata(self.bootstrap_servers)):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout:.0f}s; see {self.log_file}")


async def answers_metadata(bootstrap_servers: str) -> bool:
    """True when a broker at `bootstrap_servers` answers a metadata request and has a controller."""
    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    try:  # a cheap probe first, so a broker still booting does not flood the log
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
        return cluster.get("controller_id", -1) != -1
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


class KafkaUnreachable(RuntimeError):
    """No Kafka answers at the configured bootstrap servers; the message is one line for people."""


def check_reachable(bootstrap_servers: str, timeout: float = 10.0) -> None:
    """Raise KafkaUnreachable unless a broker at `bootstrap_servers` answers a metadata request.

    Why: every command that talks to Kafka calls this before it builds a client. aiokafka's own
    failure is a long traceback (plus "Unclosed consumer" warnings), and Faust would retry forever;
    one bounded check up front turns an unreachable broker into one line naming the address.
    """
    addresses = _addresses(bootstrap_servers)
    reasons = []
    for host, port in addresses:
        reason = _tcp_reason(host, port, timeout=min(5.0, timeout))
        if reason is None:
            break
        reasons.append(reason if len(addresses) == 1 else f"{host}:{port}: {reason}")
    else:
        raise KafkaUnreachable(f"cannot reach Kafka at {bootstrap_servers} ({'; '.join(reasons)}); "
                               "start a broker or set KAFKA_BOOTSTRAP_SERVERS")
    # In a thread with its own event loop, so that the check also works from inside a coroutine.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        reason = pool.submit(asyncio.run, _metadata_reason(bootstrap_servers, timeout)).result()
    if reason is not None:
        raise KafkaUnreachable(f"Kafka at {bootstrap_servers} does not answer ({reason}); "
                               "check that it is a Kafka broker and that its advertised listeners are reachable")


def _addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    out = []
    for entry in filter(None, (e.strip() for e in bootstrap_servers.split(","))):
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or host.endswith(":"):  # no port, or a bare IPv6 address
            host, port = entry, "9092"
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise KafkaUnreachable(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers!r} names no host")
    return out


def _tcp_reason(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens; else why not, in words.

    The name is resolved in a daemon thread so that a resolver that never answers cannot hold the
    command (getaddrinfo has no time-out of its own).
    """
    import threading

    found: list = []

    def resolve() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        return f"no answer from the name resolver for {host} within {timeout:.0f} s"
    if isinstance(found[0], OSError):
        return f"host name {host} not found" if isinstance(found[0], socket.gaierror) else str(found[0])
    last = "no address"
    for family, kind, proto, _, address in found[0]:
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(timeout)
                s.connect(address)
            return None
        except ConnectionRefusedError:
            last = "connection refused"
        except TimeoutError:
            last = f"no answer within {timeout:.0f} s"
        except OSError as exc:
            last = exc.strerror or str(exc)
    return last


async def _metadata_reason(bootstrap_servers: str, timeout: float) -> str | None:
    """None when the cluster answers a metadata request within `timeout`; else why not.

    aiokafka's logger is silenced meanwhile: before logging is configured Python would print its
    errors to stderr, which is the noise this check exists to avoid.
    """
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logger = logging.getLogger("aiokafka")
    was_disabled, logger.disabled = logger.disabled, True
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            await admin.describe_cluster()
        return None
    except TimeoutError:
        return f"no metadata within {timeout:.0f} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        logger.disabled = was_disabled


def run_until_interrupted(data_dir: Path) -> None:
    """Run a broker on `data_dir` until Ctrl-C, SIGTERM or SIGHUP (`milestones broker`).

    Why the handlers: java runs in its own session, so a supervisor's SIGTERM or a closed terminal
    reaches only this process; without them Python died at once and left java running. Each stop
    signal becomes KeyboardInterrupt (also while the broker is still starting, where `start` stops
    java itself), further signals are ignored while java is stopped (SIGTERM, SIGKILL after 30 s).
    Raises BrokerError if java exits on its own.
    """
    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in _STOP_SIGNALS}
    kafka = LocalKafka(data_dir)
    try:
        kafka.start()
        print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}", flush=True)
        code = kafka.running().wait()
        raise BrokerError(f"the broker exited with {code}; see {kafka.log_file}")
    except KeyboardInterrupt:
        pass
    finally:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            kafka.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _cluster_id() -> str:
    """A random cluster id that does not start with "-": kafka-storage would read it as an option
    (Kafka's own Uuid.randomUuid() redraws such ids for the same reason)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
