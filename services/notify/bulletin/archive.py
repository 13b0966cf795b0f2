"""The archive: `var/bulletins/<week>/` holds one week's files and `manifest.json`; `var/bulletins/index.md`
and `index.json` list every week, rebuilt from the manifests (so two writers cannot lose an entry)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write through a temporary file and rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)
    return path


def write_manifest(week_dir: Path, manifest: dict[str, Any]) -> Path:
    """The week's manifest: files, headline figures, when it was built."""
    return write_atomic(week_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2, default=str))


def rebuild_index(root: Path) -> Path:
    """index.json and index.md listing every archived week, newest first; returns index.md."""
    entries = []
    for manifest in sorted(root.glob("*-W*/manifest.json"), reverse=True):
        try:
            entries.append(json.loads(manifest.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a manifest being replaced right now: the next rebuild lists it
    write_atomic(root / "index.json", json.dumps(entries, ensure_ascii=False, indent=2, default=str))
    lines = [
        "# 城管执法精细化管理工作周报 · Weekly bulletins",
        "",
        "| 周 Week | 时段 Period | 立案 Opened | 结案 Closed | 超期 Overdue | 文件 Files |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for e in entries:
        h = e.get("headline", {})
        links = " · ".join(
            f"[{f['language']} {f['format']}]({e['week']}/{Path(f['path']).name})" for f in e.get("files", [])
        )
        lines.append(
            f"| {e['week']} | {e['period_start']} – {e['period_end']} | {h.get('opened', '')} | "
            f"{h.get('closed', '')} | {h.get('overdue', '')} | {links} |"
        )
    return write_atomic(root / "index.md", "\n".join(lines) + "\n")
