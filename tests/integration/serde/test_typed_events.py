"""Typed events against the real broker and registry: models in, models out."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastavro.schema import to_parsing_canonical_form
from typer.testing import CliRunner

from streamkit.cli.main import app
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import EventDecoder
from streamkit.serde.modelschemas import SchemaFormat, codegen, generate, write_schemas
from streamkit.serde.payloads import PayloadModels
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, load_schemas, subject_name
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import REPO, raw_messages
from tests.typed_models import Invoice, invoice

COUNT = 20


@pytest.mark.parametrize("schema_format", ["avro", "json"])
def test_models_round_trip_through_broker_and_registry(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tmp_path: Path,
    schema_format: SchemaFormat,
) -> None:
    topic = topic_factory(1, prefix=f"typed-{schema_format}")
    write_schemas(generate("tests.typed_models", schema_format), tmp_path)
    schemas = load_schemas(tmp_path)
    [schema] = schemas.values()
    sent = [invoice(n, shipped=n % 3 != 0) for n in range(COUNT)]  # some optional fields unset
    with EventProducer(streamkit_settings, schemas=schemas, registry=registry) as producer:
        futures = [producer.send(topic, model, schema=schema.name) for model in sent]
        producer.flush(30)
    assert all(future.exception(10) is None for future in futures)

    decoder, models = EventDecoder(registry), PayloadModels(Invoice, registry)
    messages = raw_messages(streamkit_settings, topic, COUNT)
    received = [
        models.typed(
            decoder.decode(
                m.value(),
                topic=topic,
                partition=m.partition(),
                offset=m.offset(),
                headers=m.headers(),
            )
        )
        for m in messages
    ]
    assert [event.payload for event in received] == sent
    assert all(isinstance(event.payload, Invoice) for event in received)
    assert [event.id for event in received] == [future.event_id for future in futures]
    print(
        f"FIGURES typed round_trip format={schema_format} events={len(received)} "
        f"equal={sum(a == b for a, b in zip(sent, (e.payload for e in received), strict=True))}"
    )


def test_codegen_then_generate_is_registry_compatible(
    streamkit_settings: StreamkitSettings, registry: SchemaRegistry, tmp_path: Path
) -> None:
    package = tmp_path / "svc_roundtrip"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "events.py").write_text(codegen(REPO / "schemas"))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        write_schemas(generate("svc_roundtrip.events"), tmp_path / "regenerated")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("svc_roundtrip")]:
            del sys.modules[name]
    original = load_schemas(REPO / "schemas")
    regenerated = load_schemas(tmp_path / "regenerated")
    checked = 0
    for name in regenerated:
        before, after = original[name], regenerated[name]
        assert isinstance(before, AvroSchema)
        assert isinstance(after, AvroSchema)
        assert to_parsing_canonical_form(after.parsed) == to_parsing_canonical_form(before.parsed)
        subject = subject_name("topic", f"typed-roundtrip-{tmp_path.name[-6:]}-{after.topic}", name)
        registry.register(subject, before)
        registry.set_compatibility(subject, "FULL_TRANSITIVE")
        report = registry.check(subject, after)
        assert report.compatible, report.reasons
        checked += 1
    assert checked == 2
    print(
        f"FIGURES typed codegen_generate schemas={checked} canonical_equal={checked} "
        f"full_transitive_compatible={checked}"
    )


def test_schemas_check_names_the_field_a_model_gets_wrong(
    streamkit_settings: StreamkitSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    source = codegen(REPO / "schemas").replace("total_cents: int", "total_cents: str")
    (tmp_path / "svc_mismatch.py").write_text(source)
    env = {
        "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": streamkit_settings.kafka.bootstrap_servers,
        "STREAMKIT_SCHEMA_REGISTRY__URL": str(streamkit_settings.schema_registry.url),
    }
    try:
        result = CliRunner().invoke(
            app, ["schemas", "check", str(REPO / "schemas"), "--models", "svc_mismatch"], env=env
        )
    finally:
        import sys

        sys.modules.pop("svc_mismatch", None)
    assert result.exit_code == 1, result.output
    assert "at field 'payload.total_cents': schema has long, model has string" in result.output
    assert "PaymentReceived: matches" in result.output
    print(f"FIGURES typed schemas_check exit={result.exit_code} mismatches=1")
