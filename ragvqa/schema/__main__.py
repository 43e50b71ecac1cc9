"""`python -m ragvqa.schema --markdown`: the pipeline reference page on stdout."""

from __future__ import annotations

import sys

from ragvqa.schema.markdown import COMMAND, markdown


def main(argv: list[str]) -> int:
    if argv != ["--markdown"]:
        print(f"usage: {COMMAND}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
