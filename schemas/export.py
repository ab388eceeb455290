"""Export the contracts for non-Python consumers: JSON Schema per model, ClickHouse DDL, topic list."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import topics
from schemas.models import ALL_MODELS
from schemas.tables import bootstrap_statements, migration_statements


def export(out_dir: Path, database: str = "dim") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, model in ALL_MODELS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    ddl = out_dir / "clickhouse.sql"
    lines = [s.strip() + ";" for s in bootstrap_statements(database)]
    for version, desc, stmts in migration_statements(database):
        lines.append(f"-- migration {version}: {desc}")
        lines.extend(s.strip() + ";" for s in stmts)
    ddl.write_text("\n\n".join(lines) + "\n")
    written.append(ddl)
    tpath = out_dir / "topics.json"
    tpath.write_text(json.dumps(list(topics.ALL_TOPICS), indent=2) + "\n")
    written.append(tpath)
    return written
