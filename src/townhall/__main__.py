"""`python -m townhall` runs the CLI."""

from townhall.cli import main

main()
