"""Each module of the order saga, chat, feed and uploads states its CAP/PACELC choice in its
README, in a table, and names the tests that show the behaviour following from it: every named
test exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MODULES = ["orders", "inventory", "payments", "shipping", "chat", "feed", "uploads"]


def consistency_section(module: str) -> str:
    text = (ROOT / "src" / "townhall" / module / "README.md").read_text()
    found = re.search(r"^#+ Consistency choice: (.*?)$(.*?)(?=^#)", text, re.M | re.S)
    assert found, f"{module}/README.md has no 'Consistency choice' section"
    return found.group(0)


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
    return names


@pytest.mark.parametrize("module", MODULES)
def test_the_module_states_its_choice_in_a_table_and_every_test_it_names_exists(module):
    section = consistency_section(module)
    assert "| on a partition | else |" in section
    named = set(re.findall(r"`(test_\w+)`", section))
    assert named, f"{module}: no test named"
    assert named - defined_tests() == set()
