"""KafkaCluster's node configuration (no Docker engine needed: nothing is started)."""

from __future__ import annotations

import pytest

pytest.importorskip("testcontainers", reason="the test kit needs streamkit[testing]")


from streamkit.testing.cluster import KafkaCluster


@pytest.fixture
def cluster() -> KafkaCluster:
    return KafkaCluster(image="streamkit/kafka:unit-test")


def test_nodes_form_one_replicated_quorum(cluster: KafkaCluster) -> None:
    envs = [node.env for node in cluster.nodes.values()]

    assert [env["KAFKA_NODE_ID"] for env in envs] == ["1", "2", "3"]
    assert {env["CLUSTER_ID"] for env in envs} == {cluster.cluster_id}
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert len(voters) == 1
    assert voters.pop().count("@127.0.0.1:") == 3
    for env in envs:
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"


def test_every_listener_is_on_loopback(cluster: KafkaCluster) -> None:
    addresses = cluster.bootstrap_servers.split(",")

    assert len(set(addresses)) == 3
    assert all(address.startswith("127.0.0.1:") for address in addresses)
    for node in cluster.nodes.values():
        listeners = node.env["KAFKA_LISTENERS"].split(",")
        assert all("://127.0.0.1:" in listener for listener in listeners)


def test_env_overrides_win_and_a_single_node_needs_no_replicas() -> None:
    single = KafkaCluster(1, image="x", env={"KAFKA_NUM_PARTITIONS": "6"})

    env = single.node(1).env
    assert env["KAFKA_NUM_PARTITIONS"] == "6"
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "1"
