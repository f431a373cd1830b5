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


def test_readme_says_when_create_admin_takes_effect():
    [row] = [line for line in README.read_text().splitlines() if "users create-admin" in line]
    assert "keeps its old rights until it expires" in row
    assert "sign in again or refresh" in row
