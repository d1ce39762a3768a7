"""The documentation site's generated parts: every setting has a documented row."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from streamkit.settings import StreamkitSettings, env_var_name

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("streamkit_docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _settings() -> list[tuple[str, str]]:
    found = []
    for section, field in StreamkitSettings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        found += [(section, name) for name in model.model_fields]
    return found


@pytest.mark.parametrize(("section", "name"), _settings())
def test_every_setting_has_a_described_row(hooks: ModuleType, section: str, name: str) -> None:
    rows = {row[1]: row for row in hooks.settings_rows()}
    variable = env_var_name(section, name)
    assert variable in rows, f"{variable} has no row in the configuration reference"
    description = rows[variable][4]
    assert description, f"{variable}: give the field a description or a docstring"


def test_the_reference_page_is_generated_from_the_models(hooks: ModuleType) -> None:
    page = (DOCS / "reference" / "configuration.md").read_text()
    assert hooks.MARKER in page
    rendered = hooks.on_page_markdown(page, None, None, None)
    assert rendered.count("| `STREAMKIT_") == len(_settings())
