"""A real schema registry without Docker: Apicurio Registry built from Maven Central jars, run by `java`.

Why: the Confluent wire format is tested against a real registry's Confluent-compatible API
(`/apis/ccompat/v7`), not against an imitation. Apicurio publishes its application as a plain jar
(`io.apicurio:apicurio-registry-app`), a Quarkus app that needs Quarkus' build step, so this module
writes a small Maven project that depends on it and runs `quarkus-maven-plugin:build` once, then
starts the runner jar with in-memory (H2) storage on a loopback port.

Why 2.4.2.Final: it is the newest version whose dependencies Maven Central serves (2.6.x and 3.x
depend on modules that are published elsewhere; 3.x also needs Java 21). Two parts of it are not on
Central and are left out: the everit JSON Schema library (JSON Schema artifacts; Avro is all this
project registers) and the deployment jar of Apicurio's config-index extension, whose build step
only lists the properties that may be changed at run time: an empty list stands in for it
(`DynamicProperties.java` below), so no property is changeable through the admin API.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from milestone_stream.dev.kafka_local import cache_dir, free_port, terminate

APICURIO_VERSION = "2.4.2.Final"
QUARKUS_VERSION = "2.16.4.Final"  # the Quarkus that Apicurio 2.4.2 is built with (its parent POM)
CCOMPAT = "/apis/ccompat/v7"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>milestone-stream</groupId><artifactId>local-registry</artifactId><version>1</version>
  <properties><project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <dependencyManagement><dependencies>
    <dependency><groupId>io.quarkus</groupId><artifactId>quarkus-bom</artifactId>
      <version>{quarkus}</version><type>pom</type><scope>import</scope></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency><groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId>
      <version>{apicurio}</version>
      <exclusions>
        <exclusion><groupId>com.github.everit-org.json-schema</groupId>
          <artifactId>org.everit.json.schema</artifactId></exclusion>
        <exclusion><groupId>io.apicurio</groupId>
          <artifactId>apicurio-common-app-components-config-index</artifactId></exclusion>
      </exclusions></dependency>
  </dependencies>
  <build><plugins>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-compiler-plugin</artifactId>
      <version>3.11.0</version><configuration><release>17</release></configuration></plugin>
    <plugin><groupId>io.quarkus</groupId><artifactId>quarkus-maven-plugin</artifactId>
      <version>{quarkus}</version>
      <executions><execution><goals><goal>build</goal></goals></execution></executions></plugin>
  </plugins></build>
</project>
"""

_DYNAMIC_PROPERTIES = """package milestones;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/** Stands in for the build step of Apicurio's config-index extension (its deployment jar is not on
 *  Maven Central): no property is changeable at run time through the admin API. */
@ApplicationScoped
public class DynamicProperties {
    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
"""


class RegistryError(RuntimeError):
    """The local registry could not be built or started."""


def runner_jar() -> Path:
    """The registry's runnable jar, built once by Maven into the cache (`.cache/`)."""
    work = cache_dir() / f"apicurio-registry-{APICURIO_VERSION}"
    jar = work / "target" / "local-registry-1-runner.jar"
    if (work / ".complete").exists() and jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryError("Maven (mvn) is needed to build the local schema registry")
    source = work / "src" / "main" / "java" / "milestones"
    source.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(quarkus=QUARKUS_VERSION, apicurio=APICURIO_VERSION))
    (source / "DynamicProperties.java").write_text(_DYNAMIC_PROPERTIES)
    print(f"building Apicurio Registry {APICURIO_VERSION} with Maven into {work} (once)", file=sys.stderr)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "package", "-DskipTests",
         # the app jar carries no Jandex index: Quarkus must index it to find its beans
         "-Dquarkus.index-dependency.app.group-id=io.apicurio",
         "-Dquarkus.index-dependency.app.artifact-id=apicurio-registry-app"],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not jar.exists():
        raise RegistryError(f"Maven could not build Apicurio Registry {APICURIO_VERSION}:\n"
                            f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (work / ".complete").write_text(APICURIO_VERSION)
    return jar


@dataclass
class LocalRegistry:
    """One Apicurio Registry on loopback with in-memory storage (nothing survives a stop)."""

    data_dir: Path
    heap: str = "384m"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    port: int = field(default=0, init=False)

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL (what MILESTONES_SCHEMA_REGISTRY_URL takes)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "registry.log"

    def start(self, timeout: float = 120.0) -> LocalRegistry:
        jar = runner_jar()
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        java_home = os.environ.get("JAVA_HOME")
        java = shutil.which("java", path=os.path.join(java_home, "bin")) if java_home else shutil.which("java")
        if java is None:
            raise RegistryError("java is needed to run the local schema registry (Java 17+)")
        cmd = [java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
               f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
               "-Dquarkus.log.level=WARN", "-jar", str(jar)]
        try:
            self.process = subprocess.Popen(cmd, stdout=open(self.log_file, "ab"), stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.data_dir)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RegistryError(f"the schema registry exited; see {self.log_file}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as answer:  # noqa: S310 (loopback)
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise RegistryError(f"the schema registry did not answer within {timeout:.0f}s; see {self.log_file}")
