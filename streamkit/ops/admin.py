"""Admin helpers: ensure topics exist as declared, describe a group's lag."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from streamkit.client.config import client_config, topic_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import kafka_errors
from streamkit.consume.retry_topics import RetryTopics, is_retry_topic
from streamkit.errors import KafkaClientError
from streamkit.ops.acl import AclChange, AclSpec, ensure_acls
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["PartitionLag", "StreamkitAdmin", "TopicChange", "TopicSpec"]

_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    """A topic as it should be; ``config`` wins over the ``STREAMKIT_TOPICS__*`` defaults."""

    name: str
    partitions: int = 3
    replication_factor: int = -1  # the broker's default.replication.factor
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicChange:
    """What :meth:`StreamkitAdmin.ensure_topics` did to one topic."""

    name: str
    action: str  # "created", "partitions increased", "configs updated", "unchanged"
    detail: str = ""


@dataclass(frozen=True)
class PartitionLag:
    """Committed offset, end offset and lag of one partition for a group."""

    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Messages not yet committed (the whole partition if nothing is committed)."""
        return self.end - (self.committed or 0)


def _result(future: Any, action: str, topic: str | None = None) -> Any:
    with kafka_errors(action, topic=topic):
        return future.result(timeout=_TIMEOUT_S)


class StreamkitAdmin:
    """Declarative topic management and lag inspection over ``AdminClient``."""

    def __init__(self, settings: StreamkitSettings | None = None) -> None:
        self.settings = settings or load_settings()
        self._admin, _ = connect(AdminClient, client_config(self.settings, "admin"), self.settings)

    def __repr__(self) -> str:
        return f"StreamkitAdmin(bootstrap={self.settings.kafka.bootstrap_servers!r})"

    @property
    def client(self) -> AdminClient:
        """The underlying confluent-kafka admin client."""
        return self._admin

    def ensure_acls(self, specs: Iterable[AclSpec]) -> list[AclChange]:
        """Create the missing ACLs of ``specs`` (idempotent; see :mod:`streamkit.ops.acl`)."""
        return ensure_acls(self._admin, specs)

    def partitions(self, topic: str) -> int | None:
        """How many partitions ``topic`` has, or None if it does not exist."""
        # Asking for all topics: a metadata request naming the topic would let a broker
        # with auto.create.topics.enable create it, with default settings.
        with kafka_errors("list topics", topic=topic):
            metadata = self._admin.list_topics(timeout=_TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions)

    def ensure_topics(
        self, specs: Iterable[TopicSpec], *, retry_topics: bool = True
    ) -> list[TopicChange]:
        """Create missing topics; grow partitions and set configs of existing ones.

        Idempotent. A topic with more partitions than declared is left alone (Kafka
        cannot shrink a topic) and reported. With ``STREAMKIT_CONSUMER__RETRY_DELAYS``
        set (retry policy ``topics``) and ``retry_topics``, each topic's retry topics
        are ensured after it, with its partition count and configs.
        """
        changes: list[TopicChange] = []
        for spec in self._with_retry_topics(specs) if retry_topics else specs:
            existing = self.partitions(spec.name)
            if existing is None:
                changes.append(self._create(spec))
                continue
            done = []
            if existing < spec.partitions:
                new = NewPartitions(spec.name, spec.partitions)
                with kafka_errors("increase partitions", topic=spec.name):
                    futures = self._admin.create_partitions([new])
                for future in futures.values():
                    _result(future, "increase partitions", spec.name)
                done.append(
                    TopicChange(
                        spec.name, "partitions increased", f"{existing} -> {spec.partitions}"
                    )
                )
            if self._configs(spec):
                done.append(self._set_configs(spec))
            detail = f"has {existing} partitions (declared {spec.partitions})"
            changes.extend(
                [c for c in done if c.action != "unchanged"]
                or [TopicChange(spec.name, "unchanged", detail)]
            )
        return changes

    def _with_retry_topics(self, specs: Iterable[TopicSpec]) -> list[TopicSpec]:
        consumer = self.settings.consumer
        if not consumer.uses_retry_topics:
            return list(specs)
        out: list[TopicSpec] = []
        for spec in specs:
            out.append(spec)
            if spec.name.endswith(consumer.dead_letter_suffix) or is_retry_topic(
                consumer, spec.name
            ):
                continue
            partitions = max(spec.partitions, self.partitions(spec.name) or 0)
            out += [
                replace(spec, name=stage.topic, partitions=partitions)
                for stage in RetryTopics(consumer, [spec.name]).stages(spec.name)
            ]
        return out

    def _configs(self, spec: TopicSpec) -> dict[str, str]:
        return {**topic_config(self.settings), **spec.config}

    def _create(self, spec: TopicSpec) -> TopicChange:
        new = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor,
            config=self._configs(spec),
        )
        with kafka_errors("create topic", topic=spec.name):
            futures = self._admin.create_topics([new], operation_timeout=_TIMEOUT_S)
        for future in futures.values():
            try:
                _result(future, "create topic", spec.name)
            except KafkaClientError as exc:
                if exc.code != "TOPIC_ALREADY_EXISTS":  # created concurrently: fine
                    raise
        return TopicChange(spec.name, "created", f"{spec.partitions} partitions")

    def _set_configs(self, spec: TopicSpec) -> TopicChange:
        resource = ConfigResource("topic", spec.name)
        with kafka_errors("describe configs", topic=spec.name):
            described = self._admin.describe_configs([resource])
        current = _result(described[resource], "describe configs", spec.name)
        differing = {
            k: v
            for k, v in self._configs(spec).items()
            if k not in current or current[k].value != str(v)
        }
        if not differing:
            return TopicChange(spec.name, "unchanged")
        # Incremental alter sets only the listed keys, leaving other overrides alone.
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AlterConfigOpType,
            ConfigEntry,
        )

        update = ConfigResource(
            "topic",
            spec.name,
            incremental_configs=[
                ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET)
                for k, v in differing.items()
            ],
        )
        with kafka_errors("alter configs", topic=spec.name):
            futures = self._admin.incremental_alter_configs([update])
        for future in futures.values():
            _result(future, "alter configs", spec.name)
        return TopicChange(spec.name, "configs updated", ", ".join(sorted(differing)))

    def describe_lag(self, group: str, topics: Iterable[str] | None = None) -> list[PartitionLag]:
        """Committed offset, end offset and lag of every partition ``group`` consumes.

        Args:
            group: consumer group id.
            topics: restrict to these topics (default: every topic the group committed).
        """
        request = [ConsumerGroupTopicPartitions(group)]
        if topics is not None:
            request = [
                ConsumerGroupTopicPartitions(
                    group,
                    [
                        TopicPartition(topic, p)
                        for topic in topics
                        for p in range(self.partitions(topic) or 0)
                    ],
                )
            ]
        with kafka_errors("list group offsets", group=group):
            futures = self._admin.list_consumer_group_offsets(request)
        committed = _result(futures[group], "list group offsets").topic_partitions
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        with kafka_errors("list offsets"):
            ends = self._admin.list_offsets(
                {TopicPartition(tp.topic, tp.partition): latest for tp in committed}
            )
        lags = []
        for tp in committed:
            end = _result(ends[TopicPartition(tp.topic, tp.partition)], "list offsets", tp.topic)
            lags.append(
                PartitionLag(
                    tp.topic, tp.partition, tp.offset if tp.offset >= 0 else None, end.offset
                )
            )
        return sorted(lags, key=lambda lag: (lag.topic, lag.partition))
