"""The demo's pure parts: payloads, percentiles, the summary, the cluster choice."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

pytest.importorskip("rich", reason="the CLI needs streamkit[cli]")

from rich.console import Console

from streamkit.cli import demo
from streamkit.cli.demo import DemoSummary, percentile
from streamkit.cli.examples import ORDER_SCHEMA, example_schemas_dir, order_payload
from streamkit.errors import ConfigError, MissingExtraError
from streamkit.serde.schemas import load_schemas, validate_record
from streamkit.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
JSON_KEYS = {
    "produced",
    "consumed",
    "duplicates_injected",
    "duplicates_skipped",
    "poison_injected",
    "dead_lettered",
    "lost",
    "msgs_per_s",
    "p50_ms",
    "p99_ms",
    "bytes_per_event",
    "compressed_bytes_per_event",
}


def test_order_payloads_match_the_example_schema() -> None:
    schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
    for seq in (0, 1, 5, 96, 12345):
        envelope = {"id": "5f1c0d1e-0000-4000-8000-000000000000", "timestamp": 1, "type": "t"}
        validate_record(schema, {**envelope, "payload": order_payload(seq, 1_700_000_000_000)})


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        ([], 0.5, 0.0),
        ([5.0], 0.99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([float(v) for v in range(1, 101)], 1.0, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], share: float, expected: float) -> None:
    assert percentile(values, share) == expected


def test_summary_has_the_json_keys() -> None:
    summary = DemoSummary(1, 1, 0, 0, 0, 0, 0, 1.0, 1.0, 1.0)
    assert set(summary.as_dict()) >= JSON_KEYS
    out = io.StringIO()
    Console(file=out, width=100).print(summary.table())
    assert "lost" in out.getvalue()


def test_configured_cluster_is_used_as_is(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__URL", "http://127.0.0.1:2")
    settings = load_settings()
    with demo._cluster(settings, Console(quiet=True)) as (used, kind):
        assert kind == "existing"
        assert used is settings


def test_missing_schemas_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--schemas"):
        demo._schemas(tmp_path)


def test_example_schemas_ship_inside_the_package() -> None:
    directory = example_schemas_dir()
    assert Path(demo.__file__).parent in directory.parents
    assert ORDER_SCHEMA in list(demo._schemas(None))


def test_throwaway_cluster_without_the_testing_extra_names_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers", None)  # import fails as if absent
    with (
        pytest.raises(MissingExtraError, match=r"pip install 'streamkit\[testing\]'"),
        demo._cluster(load_settings(), Console(quiet=True)),
    ):
        pass
