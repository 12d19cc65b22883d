"""`python -m palaestra` runs the CLI."""

from palaestra.cli.app import main

main()
