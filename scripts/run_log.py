"""A benchmark's finished work, one JSON line per unit, so that a stopped run keeps what it computed.

    log = RunLog(folder, "problems.jsonl", key_fields=("setting", "problem"), value_field="scores")
    log.get(("svd", 3))                  # the merged values of that key, or {}
    log.add(("svd", 3), {"DPS": {...}})  # merged into them, and appended to the file at once

A key's lines are merged in file order (``dict.update``), so a method added later is one more line. With no
folder, the log lives in memory only.
"""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    def __init__(self, folder: str | Path | None, filename: str, key_fields: tuple[str, ...], value_field: str):
        self.path = None if folder is None else Path(folder) / filename
        self.key_fields, self.value_field = tuple(key_fields), value_field
        self.values: dict[tuple, dict] = {}
        if self.path is not None and self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key = tuple(rec[f] for f in self.key_fields)
                    self.values.setdefault(key, {}).update(rec[self.value_field])
                except (ValueError, KeyError, TypeError) as err:
                    raise SystemExit(f"{self.path}, line {n}: not a record of this run ({err!r}); move the file "
                                     "away to start the run afresh") from err

    def get(self, key: tuple) -> dict:
        return self.values.get(tuple(key), {})

    def add(self, key: tuple, value: dict) -> None:
        self.values.setdefault(tuple(key), {}).update(value)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = dict(zip(self.key_fields, key)) | {self.value_field: value}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
