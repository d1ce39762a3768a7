"""A pytest helper for users' suites: event models and their schemas must agree.

::

    from streamkit.testing.schemas import assert_models_match_schemas

    def test_events_match_their_schemas() -> None:
        assert_models_match_schemas("my_service.events", "schemas")

It fails naming each field that is missing on one side or whose type or default
differs (the same comparison as ``streamkit schemas check --models``), and when a
model has no schema of its name at all.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from streamkit._extras import require
from streamkit.serde.schemas import load_schemas

require("models", "dataclasses_avroschema")  # the model <-> schema mapping's extra

from streamkit.serde.modelschemas import event_models, iter_model_checks  # noqa: E402

__all__ = ["assert_models_match_schemas"]


def assert_models_match_schemas(
    module: str | ModuleType, directory: str | Path = "schemas", *, require_schema: bool = True
) -> None:
    """Assert that every event model of ``module`` agrees with its schema in ``directory``.

    Args:
        module: the module (or its dotted name) that defines the event models.
        directory: the schema directory (``.avsc`` and JSON Schema ``.json`` files).
        require_schema: also fail for a model with no schema of its name.

    Raises:
        AssertionError: listing every disagreement, field by field.
    """
    problems = []
    for model, schema, mismatches in iter_model_checks(
        event_models(module, "json"), load_schemas(directory)
    ):
        if schema is None and require_schema:
            problems.append(f"{model.__qualname__}: no schema of its name in {directory}")
        problems.extend(str(mismatch) for mismatch in mismatches)
    if problems:
        raise AssertionError("event models and schemas disagree:\n  " + "\n  ".join(problems))
