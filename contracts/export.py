"""Generate the JSON Schema documents committed under contracts/schemas/ (`python -m contracts.export`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contracts import commands, reports
from contracts.registry import events

SCHEMA_DIR = Path(__file__).parent / "schemas"


def documents() -> dict[str, str]:
    """File name → JSON text for every message model, outbound events and inbound payloads."""
    models: dict[str, type] = dict(events())
    for source, model in reports.INBOUND_BY_SOURCE.items():
        models[f"report.in.{source}"] = model
    for action, model in commands.COMMANDS.items():
        models[f"cmd.case.{action}"] = model
    docs = {}
    for name, model in sorted(models.items()):
        schema = model.model_json_schema()
        if hasattr(model, "example") and model.example():
            schema["examples"] = [model.example()]
        schema["$id"] = f"https://xiuhua.example/schemas/{name}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        docs[f"{name}.json"] = json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
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
