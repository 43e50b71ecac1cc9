"""The `ragvqa` command line (typer): one file per command group."""
