"""Container images of the test kit: use local, else pull official, else build.

The official images (``apache/kafka``, Apicurio Registry) are used where they can be
pulled. Machines without access to an image registry build equivalent images from
Maven Central jars on a Debian Java 21 base (see ``images/README.md``); the build is
cached, so a second run only inspects the images.

Environment variables:
    STREAMKIT_TEST_KAFKA_IMAGE: Kafka image to use as is (no pull, no build).
    STREAMKIT_TEST_REGISTRY_IMAGE: schema registry image to use as is; an image whose
        name contains ``cp-schema-registry`` is driven as Confluent Schema Registry,
        any other as Apicurio Registry.
    STREAMKIT_TEST_KEYCLOAK_IMAGE: Keycloak image (OAuth tests) to use as is.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamkit.errors import StreamkitError

__all__ = [
    "KAFKA",
    "KEYCLOAK",
    "REGISTRY",
    "ImageSpec",
    "TestKitError",
    "docker_client",
    "ensure_image",
]

log = logging.getLogger(__name__)

IMAGES_DIR = Path(__file__).parent / "images"
BUILD_SCRIPT = IMAGES_DIR / "build-images.sh"
PULL_TIMEOUT_S = 60
BUILD_HASH_LABEL = "io.streamkit.build-hash"


class TestKitError(StreamkitError, RuntimeError):
    """The test kit could not provide a container: the message says why and what to do."""

    __test__ = False  # not a pytest test class despite its name


@dataclass(frozen=True)
class ImageSpec:
    """One image the test kit needs."""

    kind: str
    env_var: str
    official: str
    local: str


KAFKA = ImageSpec(
    "kafka", "STREAMKIT_TEST_KAFKA_IMAGE", "apache/kafka:4.1.1", "streamkit/kafka:4.1.1"
)
REGISTRY = ImageSpec(
    "registry",
    "STREAMKIT_TEST_REGISTRY_IMAGE",
    "apicurio/apicurio-registry:3.3.3",
    "streamkit/apicurio-registry:3.3.3",
)
KEYCLOAK = ImageSpec(
    "keycloak",
    "STREAMKIT_TEST_KEYCLOAK_IMAGE",
    "quay.io/keycloak/keycloak:26.7.3",
    "streamkit/keycloak:26.7.3",
)


def docker_client() -> Any:
    """A docker SDK client for the local engine, or a TestKitError saying what is missing."""
    from docker import DockerClient
    from docker.errors import DockerException

    try:
        client = DockerClient.from_env(timeout=PULL_TIMEOUT_S)
        client.ping()
    except DockerException as exc:
        raise TestKitError(
            f"no Docker engine answers ({exc.__class__.__name__}). "
            "Hint: `make test` installs and starts one on Debian (scripts/ensure-docker.sh); "
            "elsewhere start Docker and check DOCKER_HOST."
        ) from exc
    return client


def _exists(client: Any, name: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def _is_local_build(client: Any, name: str) -> bool:
    labels = client.images.get(name).labels or {}
    return BUILD_HASH_LABEL in labels and shutil.which("docker") is not None


def _pull(client: Any, name: str) -> bool:
    from docker.errors import DockerException

    repository, _, tag = name.partition(":")
    try:
        client.images.pull(repository, tag=tag or "latest")
    except DockerException as exc:
        log.info("cannot pull %s (%s); will build locally", name, exc.__class__.__name__)
        return False
    return True


def _build(spec: ImageSpec) -> None:
    log.info("making sure %s is built from the current recipe", spec.local)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), spec.kind], check=False, stdout=sys.stderr, stderr=sys.stderr
    )
    if result.returncode != 0:
        raise TestKitError(
            f"building image {spec.local} failed (exit {result.returncode}); see the output "
            f"above. Hint: set {spec.env_var} to an image you have, or run `make images`."
        )


def ensure_image(spec: ImageSpec) -> str:
    """Return the name of a usable image for ``spec``, pulling or building it if needed."""
    client = docker_client()
    try:
        return _ensure(client, spec)
    finally:
        client.close()


def _ensure(client: Any, spec: ImageSpec) -> str:
    chosen = os.environ.get(spec.env_var)
    if chosen:
        if not _exists(client, chosen) and not _pull(client, chosen):
            raise TestKitError(f"{spec.env_var}={chosen} is neither present nor pullable")
        return chosen
    if _exists(client, spec.local):
        if _is_local_build(client, spec.local):
            # The build script rebuilds it when its recipe changed since (hash label).
            _build(spec)
        return spec.local
    if _exists(client, spec.official):
        return spec.official
    if _pull(client, spec.official):
        return spec.official
    _build(spec)
    if not _exists(client, spec.local):
        raise TestKitError(f"the build finished but image {spec.local} is missing")
    return spec.local


if __name__ == "__main__":  # `python -m streamkit.testing.images`: make sure all exist
    logging.basicConfig(level=logging.INFO)
    for image in (KAFKA, REGISTRY, KEYCLOAK):
        print(f"{image.kind}: {ensure_image(image)}")
