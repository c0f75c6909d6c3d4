"""Start-up against a schema registry: check every product subject's compatibility, register the
product's schemas when writing the Confluent wire format, and hand the registry to the codec.

Why at start-up: a contract that would break readers of a subject (a field removed without a
default, a type changed) must stop the process with one line before it reads or writes anything,
not surface as dead letters an hour later. Subjects follow Confluent's TopicNameStrategy:
`<topic>-value`, with the topic prefix (`MILESTONES_TOPIC_PREFIX`) included.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from milestone_stream import schemas
from milestone_stream.schemas import confluent
from milestone_stream.schemas.registry import RegistryRefused, RegistryUnavailable, SchemaRegistry
from milestone_stream.settings import ConfigError, Settings
from milestone_stream.topics import TOPICS

log = logging.getLogger(__name__)

#: the level a writer sets on a subject that has none of its own and whose registry default checks nothing
WRITER_LEVEL = "BACKWARD"
_CHECKING = ("BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


@dataclass(frozen=True)
class Subject:
    name: str         # `<prefix><topic>-value`
    schema_name: str  # the product schema its values follow
    schema: str       # that schema as JSON text, as registered


def subjects(prefix: str) -> list[Subject]:
    """One subject per product topic whose values follow an Avro contract (TopicNameStrategy)."""
    return [Subject(f"{prefix}{topic}-value", name, json.dumps(schemas.load(name), separators=(",", ":")))
            for topic, name in TOPICS.values() if name in schemas.SCHEMA_NAMES]


def start(settings: Settings, registry: SchemaRegistry | None = None) -> None:
    """Configure the codec for this process; a `ConfigError` (one line, exit 2) when the registry
    cannot be reached, refuses, or holds a version a current contract would break."""
    writing = settings.wire_format == "confluent"
    if settings.schema_registry_url is None:
        if writing:
            raise ConfigError("MILESTONES_WIRE_FORMAT=confluent needs MILESTONES_SCHEMA_REGISTRY_URL "
                              "(the registry that issues the schema ids)")
        confluent.configure(None)
        return
    registry = registry or SchemaRegistry(settings.schema_registry_url)
    try:
        ids = _check_and_register(registry, subjects(settings.topic_prefix), writing)
    except RegistryUnavailable as exc:
        raise ConfigError(f"cannot use the schema registry at {registry.url}: {' '.join(str(exc).split())}; "
                          "start it or fix MILESTONES_SCHEMA_REGISTRY_URL") from None
    except RegistryRefused as exc:
        raise ConfigError(f"the schema registry at {registry.url} refused: {' '.join(str(exc).split())}") from None
    confluent.configure(registry, ids)


def _check_and_register(registry: SchemaRegistry, found: list[Subject], writing: bool) -> dict[str, int]:
    ids: dict[str, int] = {}
    set_to: list[str] = []     # logged once every subject passed: a failure is one line alone
    unchecked: list[str] = []
    for subject in found:
        level = registry.level(subject.name)
        if level not in _CHECKING:
            if writing and level in ("", "NONE"):
                # a NONE subject would take any schema, and the check below would protect no reader
                registry.set_level(subject.name, WRITER_LEVEL)
                set_to.append(subject.name)
                level = WRITER_LEVEL
            else:
                unchecked.append(f"{subject.name} ({level or 'unknown'})")
        ok, why = registry.compatibility(subject.name, subject.schema)
        if not ok:
            reason = " ".join(" ".join(why[:1]).split())[:300] or "no reason given"
            raise ConfigError(f"the {subject.schema_name} contract would break subject {subject.name} in the "
                              f"schema registry at {registry.url} (compatibility {level or 'unknown'}): {reason}")
        if writing:
            ids[subject.schema_name] = registry.register(subject.name, subject.schema)
    if set_to:
        log.warning("schema registry: compatibility set to %s on %s (it was NONE)", WRITER_LEVEL, ", ".join(set_to))
    if unchecked:
        log.warning("schema registry: no compatibility check protects the readers of %s; set BACKWARD there",
                    ", ".join(unchecked))
    return ids
