"""The pytest plugin changes nothing for suites that do not use it, and its mock mode works.

Each case runs an inner pytest session in a child process (``pytester``), where the
plugin is loaded through its ``pytest11`` entry point as in a user's project.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

UNRELATED_SUITE = """
import json
import os
import sys
from pathlib import Path


def test_environment_is_untouched():
    # env.json: the environment the outer test started this session with.
    before = json.loads((Path(__file__).parent / "env.json").read_text())
    # pytest sets PYTEST_CURRENT_TEST, pytester's child process PYTHONPATH.
    now = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "PYTHONPATH")}
    assert "TESTCONTAINERS_RYUK_DISABLED" not in now
    assert now == before


def test_the_test_kit_is_not_imported():
    loaded = {name for name in sys.modules if name.startswith(("testcontainers", "docker"))}
    kit = {name for name in sys.modules if name.startswith("streamkit.testing.")}
    assert loaded == set()
    assert kit <= {"streamkit.testing.plugin"}


def test_plain(tmp_path):
    assert tmp_path.is_dir()
"""

MOCK_SUITE = """
import threading
import time

import pytest

from streamkit import EventConsumer, EventProducer
from streamkit.cli.examples import ORDER_SCHEMA, example_schemas_dir, order_payload


def test_round_trip_on_the_mock(streamkit_settings, topic_factory, kafka_broker):
    assert kafka_broker.mock is not None
    assert streamkit_settings.schema_registry.url.startswith("mock://")
    topic = topic_factory(partitions=2)
    with EventProducer(streamkit_settings, schemas=example_schemas_dir()) as producer:
        sent = {
            producer.send(topic, order_payload(i, 0), key=str(i), schema=ORDER_SCHEMA)
            .result(10)
            .event_id
            for i in range(20)
        }
    seen = set()
    consumer = EventConsumer([topic], lambda event: seen.add(event.id), settings=streamkit_settings)
    thread = threading.Thread(target=consumer.run, kwargs={"handle_signals": False})
    thread.start()
    deadline = time.monotonic() + 30
    while seen != sent and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop()
    thread.join(30)
    consumer.close()
    assert seen == sent


def test_a_secured_broker_fails_clearly(secure_kafka):
    pass


@pytest.mark.streamkit_kafka("container")
def test_marker_overrides_the_session_mode(request):
    from streamkit.testing.plugin import kafka_mode

    assert kafka_mode(request) == "container"
"""


def _suite_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the mode variables and record the environment the inner session starts with."""
    for name in ("STREAMKIT_TEST_KAFKA", "TESTCONTAINERS_RYUK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "PYTHONPATH")}
    (pytester.path / "env.json").write_text(json.dumps(env))


def test_a_suite_without_streamkit_fixtures_is_unaffected(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite_env(pytester, monkeypatch)
    pytester.makepyfile(test_unrelated=UNRELATED_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*streamkit*")


def test_the_plugin_loads_without_the_testing_extra(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _suite_env(pytester, monkeypatch)
    blocked = tmp_path / "blocked"
    (blocked / "testcontainers").mkdir(parents=True)
    (blocked / "testcontainers" / "__init__.py").write_text(
        "raise ImportError('testcontainers is not installed', name='testcontainers')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(blocked))
    _suite_env(pytester, monkeypatch)
    pytester.makepyfile(
        test_unrelated=UNRELATED_SUITE,
        test_uses_kafka="def test_needs_kafka(kafka_broker):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["streamkit test kit: *(hint: pip install 'streamkit[[]testing]')"])
    result.stdout.no_fnmatch_line("*During handling*")


def test_mock_mode_runs_a_round_trip_and_refuses_what_needs_a_real_broker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite_env(pytester, monkeypatch)
    pytester.makepyfile(test_mock=MOCK_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--streamkit-kafka=mock")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*secure_kafka: no TLS, SASL or ACLs*--streamkit-kafka=container"])


def test_the_mode_comes_from_the_environment_and_bad_values_are_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite_env(pytester, monkeypatch)
    pytester.makepyfile(
        test_mode="""
from streamkit.testing.plugin import kafka_mode

def test_mode(request):
    assert kafka_mode(request) == "mock"
"""
    )
    monkeypatch.setenv("STREAMKIT_TEST_KAFKA", "mock")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q").assert_outcomes(passed=1)
    monkeypatch.setenv("STREAMKIT_TEST_KAFKA", "kraft")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.stderr.fnmatch_lines(["*STREAMKIT_TEST_KAFKA='kraft'*"])
