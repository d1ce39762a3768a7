"""Without OpenTelemetry installed, everything works and no trace header is added.

The child process cannot import ``opentelemetry``: in the ``.venv-no-otel`` of
``make test-no-otel`` it is not installed; elsewhere an import hook refuses it, as a
missing package would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import REPO, raw_messages

COUNT = 5
CHILD = textwrap.dedent(
    """
    import sys

    class NoOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())

    from streamkit.consume.consumer import EventConsumer
    from streamkit.observability.tracing import NO_TRACING, otel_available, tracing_for
    from streamkit.produce.producer import EventProducer
    from streamkit.settings import load_settings
    from tests.factories import ORDER_SCHEMA, order

    topic, count = sys.argv[1], int(sys.argv[2])
    assert not otel_available()
    assert tracing_for() is NO_TRACING
    with EventProducer(load_settings(), schemas="schemas") as producer:
        futures = [producer.send(topic, order(n), schema=ORDER_SCHEMA) for n in range(count)]
        producer.flush(30)
    assert all(future.exception(10) is None for future in futures)
    print("sent", count)
    handled = []
    settings = load_settings(consumer={"group_id": f"no-otel-{topic}"})
    with EventConsumer([topic], handled.append, settings=settings) as consumer:
        consumer.run(max_messages=count, handle_signals=False)
    assert [event.id for event in handled] == [future.event_id for future in futures]
    assert "opentelemetry" not in sys.modules
    print("handled", len(handled))
    """
)


def test_without_opentelemetry_events_flow_without_trace_headers(
    streamkit_settings: StreamkitSettings, topic_factory: TopicFactory, child_env: dict[str, str]
) -> None:
    topic = topic_factory(1, prefix="no-otel")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, topic, str(COUNT)],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"sent {COUNT}" in result.stdout
    assert f"handled {COUNT}" in result.stdout
    messages = raw_messages(streamkit_settings, topic, COUNT)
    assert len(messages) == COUNT
    names = {header[0] for message in messages for header in message.headers() or []}
    assert names == {"event-id", "event-type", "event-time"}
    print(f"FIGURES typed no_otel sent={len(messages)} handled={COUNT} trace_headers=0")
