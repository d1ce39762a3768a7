from __future__ import annotations

import streamkit


def test_all_names_are_exported_and_exist() -> None:
    public = {name for name in dir(streamkit) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(streamkit, name)).__name__ == "module"}
    assert set(streamkit.__all__) - {"__version__"} == public - modules
    for name in streamkit.__all__:
        assert hasattr(streamkit, name)
