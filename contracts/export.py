"""Generate the JSON Schema documents committed under contracts/schemas/ (`python -m contracts.export`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schemas"


def documents() -> dict[str, str]:
    """File name → JSON text for every message of the AsyncAPI document (inbound reports, commands and events,
    every subject version), each with its example under `examples`."""
    from contracts.asyncapi import json_schema, message_specs

    docs = {}
    for spec in sorted(message_specs(), key=lambda s: s.name):
        schema = json_schema(spec)
        schema["$id"] = f"https://xiuhua.example/schemas/{spec.name}.json"
        docs[f"{spec.name}.json"] = json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    return docs


def write(target: Path = SCHEMA_DIR) -> list[Path]:
    """Write every document; remove stale ones."""
    target.mkdir(parents=True, exist_ok=True)
    docs = documents()
    for stale in target.glob("*.json"):
        if stale.name not in docs:
            stale.unlink()
    written = []
    for name, text in docs.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p)
    sys.exit(0)
