"""`python -m ragvqa.cli` runs the same app as the `ragvqa` console script."""

from ragvqa.cli.main import main

main()
