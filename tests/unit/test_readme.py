from pathlib import Path

from townhall.config import Settings

README = Path(__file__).parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = [
        f"TOWNHALL_{name.upper()}"
        for name in Settings.model_fields
        if f"`TOWNHALL_{name.upper()}`" not in text
    ]
    assert missing == []


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
