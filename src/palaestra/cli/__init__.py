"""palaestra.cli: the `palaestra` command (typer); thin over the library."""
