"""mkdocs hooks: the configuration reference generated from the settings models, and a
nav that lists pages other branches add once they exist.

The settings models (:mod:`streamkit.settings`) are the one source of truth: every field
becomes a row (environment variable, type, default, description from the field's
``description`` or docstring). ``tests/unit/test_docs.py`` fails when a setting has no
row or no description.
"""

from __future__ import annotations

import json
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from streamkit.settings import StreamkitSettings, env_var_name

MARKER = "<!-- streamkit:settings-reference -->"
log = logging.getLogger("mkdocs.plugins.streamkit")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " \\| ".join(names)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None
    else:
        value = field.default
    if value is None:
        return "–"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _description(field: Any) -> str:
    text = " ".join((field.description or "").split())
    return text.replace("``", "`").replace("|", "\\|")


def settings_rows() -> list[tuple[str, str, str, str, str]]:
    """(section, variable, type, default, description) of every setting."""
    rows = []
    for section, section_field in StreamkitSettings.model_fields.items():
        model = section_field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            rows.append(
                (
                    section,
                    env_var_name(section, name),
                    _type_name(field.annotation),
                    _default(field),
                    _description(field),
                )
            )
    return rows


def settings_reference() -> str:
    """The configuration reference: one table per settings section."""
    out: list[str] = []
    current = None
    for section, variable, type_name, default, description in settings_rows():
        if section != current:
            current = section
            model = StreamkitSettings.model_fields[section].annotation
            summary = (getattr(model, "__doc__", "") or "").strip().split("\n\n")[0]
            out += ["", f"## `{section}`", "", " ".join(summary.split()).replace("``", "`"), ""]
            out += ["| variable | type | default | description |", "|---|---|---|---|"]
        out.append(f"| `{variable}` | {type_name} | {default} | {description} |")
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_reference())
    return markdown


def _prune(nav: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for item in nav:
        if isinstance(item, dict):
            ((title, target),) = item.items()
            if isinstance(target, list):
                children = _prune(target, docs)
                if children:
                    kept.append({title: children})
            elif re.match(r"^[a-z]+://", str(target)) or (docs / str(target)).exists():
                kept.append(item)
            else:
                log.info("nav: %s (%s) not written yet, left out", title, target)
        elif (docs / str(item)).exists():
            kept.append(item)
    return kept


def on_config(config: Any) -> Any:
    # The nav names pages other branches are writing; until they land, they are left out.
    if config.get("nav"):
        config["nav"] = _prune(config["nav"], Path(config["docs_dir"]))
    return config
