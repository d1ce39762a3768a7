"""Declarative, idempotent ACLs through the admin API.

An :class:`AclSpec` says who may do what on which resource; :func:`ensure_acls` (also
:meth:`StreamkitAdmin.ensure_acls <streamkit.ops.admin.StreamkitAdmin.ensure_acls>`) describes
the cluster's ACLs first and creates only the missing ones, so running it on every
deploy changes nothing the second time. It never deletes an ACL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from streamkit.client.diagnose import kafka_errors
from streamkit.errors import ConfigError, ConfigProblem

__all__ = ["AclChange", "AclSpec", "consumer_acls", "ensure_acls", "producer_acls"]

_TIMEOUT_S = 30.0


def _member(enum: Any, field: str, value: str) -> Any:
    try:
        return enum[value.upper()]
    except KeyError:
        allowed = ", ".join(m.name for m in enum if m.name not in ("UNKNOWN", "ANY", "MATCH"))
        raise ConfigError(
            [ConfigProblem(f"AclSpec.{field}", f"{value!r} is not one of {allowed}")]
        ) from None


@dataclass(frozen=True)
class AclSpec:
    """One ACL entry as it should exist.

    Args:
        principal: ``User:<name>`` (a SASL user, or the mapped CN of a client certificate).
        resource_type: ``TOPIC``, ``GROUP``, ``CLUSTER``, ``TRANSACTIONAL_ID``.
        resource_name: the topic, group or transactional id (``kafka-cluster`` for the cluster).
        operation: ``READ``, ``WRITE``, ``DESCRIBE``, ``CREATE``, ``ALL``, ...
        permission: ``ALLOW`` or ``DENY``.
        pattern_type: ``LITERAL`` (the exact name) or ``PREFIXED`` (names starting with it).
        host: the client host it applies to; ``*`` for any.
    """

    principal: str
    resource_type: str
    resource_name: str
    operation: str
    permission: str = "ALLOW"
    pattern_type: str = "LITERAL"
    host: str = "*"

    def __post_init__(self) -> None:
        if ":" not in self.principal:
            raise ConfigError(
                [ConfigProblem("AclSpec.principal", f"{self.principal!r} is not Type:name")]
            )
        self.binding()  # validates every enum name

    def binding(self) -> Any:
        """The confluent-kafka ``AclBinding``."""
        return AclBinding(
            _member(ResourceType, "resource_type", self.resource_type),
            self.resource_name,
            _member(ResourcePatternType, "pattern_type", self.pattern_type),
            self.principal,
            self.host,
            _member(AclOperation, "operation", self.operation),
            _member(AclPermissionType, "permission", self.permission),
        )

    def binding_filter(self) -> Any:
        """A filter matching exactly this entry."""
        binding = self.binding()
        return AclBindingFilter(
            binding.restype,
            binding.name,
            binding.resource_pattern_type,
            binding.principal,
            binding.host,
            binding.operation,
            binding.permission_type,
        )

    def __str__(self) -> str:
        return (
            f"{self.permission.upper()} {self.principal} {self.operation.upper()} on "
            f"{self.resource_type.upper()} {self.resource_name!r} ({self.pattern_type.upper()}, "
            f"host {self.host})"
        )


@dataclass(frozen=True)
class AclChange:
    """What :func:`ensure_acls` did with one spec: ``created`` or ``unchanged``."""

    spec: AclSpec
    action: str


def producer_acls(principal: str, topic: str, *, pattern_type: str = "LITERAL") -> list[AclSpec]:
    """What a producer needs on ``topic``: WRITE and DESCRIBE (idempotence included)."""
    return [
        AclSpec(principal, "TOPIC", topic, operation, pattern_type=pattern_type)
        for operation in ("WRITE", "DESCRIBE")
    ]


def consumer_acls(
    principal: str, topic: str, group: str, *, pattern_type: str = "LITERAL"
) -> list[AclSpec]:
    """What a consumer group member needs: READ and DESCRIBE on ``topic``, READ on ``group``."""
    return [
        AclSpec(principal, "TOPIC", topic, "READ", pattern_type=pattern_type),
        AclSpec(principal, "TOPIC", topic, "DESCRIBE", pattern_type=pattern_type),
        AclSpec(principal, "GROUP", group, "READ", pattern_type=pattern_type),
    ]


def _wait(future: Any, action: str, topic: str | None = None) -> Any:
    with kafka_errors(action, topic=topic):
        return future.result(timeout=_TIMEOUT_S)


def ensure_acls(admin: Any, specs: Iterable[AclSpec]) -> list[AclChange]:
    """Create the ACLs of ``specs`` that do not exist yet; report each spec's outcome.

    Args:
        admin: a confluent-kafka ``AdminClient`` whose principal may alter ACLs.
        specs: the entries that must exist.

    Raises:
        AuthorizationError: the admin principal may not describe or create ACLs.
    """
    unique = list(dict.fromkeys(specs))
    missing = []
    for spec in unique:
        with kafka_errors("describe ACLs"):
            described = admin.describe_acls(spec.binding_filter(), request_timeout=_TIMEOUT_S)
        if not _wait(described, "describe ACLs"):
            missing.append(spec)
    if missing:
        with kafka_errors("create ACLs"):
            futures = admin.create_acls(
                [spec.binding() for spec in missing], request_timeout=_TIMEOUT_S
            )
        for future in futures.values():
            _wait(future, "create ACLs")
    return [AclChange(spec, "created" if spec in missing else "unchanged") for spec in unique]
