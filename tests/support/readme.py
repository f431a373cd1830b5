"""The README's facts that tests check, read from the file itself."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def trying_it_commands() -> list[str]:
    """The shell lines of the README's "Trying it" section, continuation lines joined."""
    section = README.read_text().split("## Trying it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.replace("\\\n", " ").splitlines()
