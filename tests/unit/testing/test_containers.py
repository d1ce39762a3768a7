"""Unit tests for the test kit's container helpers that need no Docker engine."""

from __future__ import annotations

import base64
import uuid

import pytest

pytest.importorskip("testcontainers", reason="the test kit needs streamkit[testing]")


from streamkit.testing import containers
from streamkit.testing.containers import new_cluster_id


def test_cluster_id_is_sixteen_bytes_of_url_safe_base64() -> None:
    cluster_id = new_cluster_id()

    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 encodes to "-" in URL-safe base64: the first draws would be read as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15))] * 3 + [uuid.UUID(int=1)])
    monkeypatch.setattr(containers.uuid, "uuid4", lambda: next(draws))

    assert not new_cluster_id().startswith("-")
