"""A real schema registry for the test session: Apicurio Registry from Maven Central jars, run by `java`
(streams/dev/registry_local.py), started once and shared; each test has its own subjects (its topic prefix).

`MILESTONES_TEST_SCHEMA_REGISTRY_URL` points the tests at an existing registry's Confluent-compatible
API instead (Confluent Schema Registry, Karapace, Apicurio's /apis/ccompat/v7).
"""
from __future__ import annotations

import os

import pytest

from milestone_stream.dev.registry_local import LocalRegistry

from support.helpers import REPO


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory):
    """The base URL of a Confluent-compatible schema registry API."""
    if os.environ.get("MILESTONES_TEST_SCHEMA_REGISTRY_URL"):
        yield os.environ["MILESTONES_TEST_SCHEMA_REGISTRY_URL"]
        return
    os.environ.setdefault("MILESTONES_CACHE_DIR", str(REPO / ".cache"))
    registry = LocalRegistry(tmp_path_factory.mktemp("registry"))
    registry.start()
    try:
        yield registry.url
    finally:
        registry.stop()
