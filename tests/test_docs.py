"""The README documents every setting, its environment variable and its flag."""

from pathlib import Path

import pytest

from aria_stream.cli import SECRET_SETTINGS
from aria_stream.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_readme_documents_setting(name: str) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README has no settings row for {name}"
    assert f"`ARIA_{name.upper()}`" in rows[0]
    if name not in SECRET_SETTINGS:
        assert f"`--{name.replace('_', '-')}`" in rows[0]


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_setting_has_description(name: str) -> None:
    description = Settings.model_fields[name].description
    assert description and description.endswith(".")
