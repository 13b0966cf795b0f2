"""One module per `xiuhua` command; each has `register(subparsers)` and sets `func`."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(args: Any, human: str, data: Any) -> None:
    """Print for a person, or JSON with --json."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human)
