import re

from support.readme import README, trying_it_commands
from townhall.config import Settings


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


def _relative_links(text: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if "://" not in t and not t.startswith("#")]


def test_readme_links_to_the_architecture_page_and_every_link_resolves_in_the_repository():
    links = _relative_links(README.read_text())
    assert "docs/architecture.md" in links
    root = README.parent.resolve()
    for link in links:
        target = (root / link).resolve()
        assert target.is_relative_to(root), f"{link} points outside the repository"
        assert target.exists(), f"{link} does not exist"


def test_trying_it_sets_the_access_token_before_using_it():
    commands = trying_it_commands()
    [using] = [i for i, line in enumerate(commands) if "$ACCESS_TOKEN" in line]
    setting = [i for i, line in enumerate(commands) if line.startswith("ACCESS_TOKEN=$(")]
    assert setting and setting[0] < using
    assert "/api/v1/auth/token" in commands[setting[0]]
    assert '["access_token"]' in commands[setting[0]]
