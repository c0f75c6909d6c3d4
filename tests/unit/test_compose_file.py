"""docker-compose.yml stays a valid Compose file and in step with the local stack (`./dev up`): the
same processes, environment variables the code reads, the broker settings of the local launcher,
the same topics (pure logic: the file is parsed and checked, no Docker needed)."""
from __future__ import annotations

import json
import re
from importlib.metadata import distribution
from pathlib import Path

import jsonschema
import pytest
import yaml

from milestone_stream.dev.kafka_local import LocalKafka
from milestone_stream.settings import Settings

from support.helpers import REPO

COMPOSE = REPO / "docker-compose.yml"
SOURCES = ("streams", "agents", "sinks", "schemas")
#: variables the code reads from the environment besides Settings: named in the source as literals
ENV_NAME = re.compile(r"""["']((?:MILESTONES|KAFKA|ANTHROPIC)_[A-Z0-9_]+)["']""")
#: local broker properties that are about this machine (addresses, folders, a local flush tuning), not the stack
LOCAL_ONLY = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs",
              "listener.security.protocol.map", "log.flush.interval.messages"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def ours(compose: dict) -> dict[str, dict]:
    """The services that run this project's image (built from the Dockerfile beside the file)."""
    return {name: s for name, s in compose["services"].items() if s.get("build") in (".", {"context": "."})}


def variables_the_code_reads() -> set[str]:
    names = {f.alias for f in Settings.model_fields.values() if f.alias}
    for folder in SOURCES:
        for path in (REPO / folder).rglob("*.py"):
            names |= set(ENV_NAME.findall(path.read_text(encoding="utf-8")))
    return names


def test_the_file_is_valid_against_the_compose_specification(compose):
    """The Compose Specification's own JSON schema, as shipped by check-jsonschema (a test dependency;
    read as a data file: its CLI is not needed)."""
    path = Path(str(distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json")))
    schema = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # and the check bites: a wrong condition is refused
    broken = {**compose, "services": {**compose["services"],
                                      "worker": {**compose["services"]["worker"],
                                                 "depends_on": {"topics": {"condition": "finished"}}}}}
    assert list(validator.iter_errors(broken))


def test_the_same_processes_as_the_local_stack(compose):
    services = ours(compose)
    commands = {name: s["command"] for name, s in services.items()}
    # `./dev up`: the topics created first, then worker, ui and sender; the sample published
    assert sorted(commands.values()) == [["publish-sample"], ["sender"], ["topics"], ["ui"], ["worker"]]
    assert compose["services"]["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name, s in services.items():
        if name != "topics":
            assert s["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, name
    assert "profiles" in services["sample"]  # sample data only when asked for (--profile sample)
    assert compose["services"]["sender"]["depends_on"]["mailpit"] == {"condition": "service_healthy"}


def test_every_variable_set_for_our_processes_is_one_the_code_reads(compose):
    read = variables_the_code_reads()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "MILESTONES_PARTITIONS", "MILESTONES_SECRET"} <= read  # the scan works
    for name, service in ours(compose).items():
        unknown = set(environment(service)) - read
        assert not unknown, f"{name} sets {sorted(unknown)}, which no code reads"
        Settings.from_env({k: v for k, v in environment(service).items() if "${" not in v})  # values valid


def test_the_environment_matches_the_stack(compose):
    env = environment(compose["services"]["worker"])
    kafka = environment(compose["services"]["kafka"])
    # the services reach the broker at the listener it advertises to containers
    assert f"PLAINTEXT://{env['KAFKA_BOOTSTRAP_SERVERS']}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    # the same topics and partitions as the local stack (the defaults, which `./dev up` uses)
    assert int(env["MILESTONES_PARTITIONS"]) == Settings.model_fields["partitions"].default
    assert env["MILESTONES_GUARANTEE"] == Settings.model_fields["guarantee"].default
    # secrets come from the user's shell or .env, never from the file
    for secret in ("MILESTONES_SECRET", "ANTHROPIC_API_KEY"):
        assert env[secret].startswith("${") and env[secret].endswith("}"), secret
    # what listens is what is published
    worker, ui = compose["services"]["worker"], compose["services"]["ui"]
    assert f"{env['MILESTONES_WEB_PORT']}:{env['MILESTONES_WEB_PORT']}" in worker["ports"]
    ui_env = environment(ui)
    assert f"{ui_env['MILESTONES_UI_PORT']}:{ui_env['MILESTONES_UI_PORT']}" in ui["ports"]
    assert ui_env["MILESTONES_UI_URL"].endswith(f":{ui_env['MILESTONES_UI_PORT']}")
    assert env["MILESTONES_SMTP_HOST"] in compose["services"]  # the SMTP catcher's service


def test_the_broker_has_the_local_launchers_settings(compose, tmp_path):
    props = dict(line.split("=", 1) for line in LocalKafka(tmp_path)._write_config(
        {"port": 9092, "controller_port": 9093}).read_text().splitlines())
    kafka = environment(compose["services"]["kafka"])
    as_props = {k.removeprefix("KAFKA_").lower().replace("_", "."): v for k, v in kafka.items()}
    different = {k: (v, as_props.get(k)) for k, v in props.items() if k not in LOCAL_ONLY and as_props.get(k) != v}
    assert different == {}, "docker-compose.yml's broker differs from streams/dev/kafka_local.py"
    assert compose["services"]["kafka"]["image"].endswith(":3.9.1")  # the version the launcher runs
    from milestone_stream.dev import kafka_local
    assert kafka_local.KAFKA_VERSION == "3.9.1"
