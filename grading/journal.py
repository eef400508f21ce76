"""The grading journal: each student's result on disk the moment it arrives.

``OUT/journal.jsonl`` holds a header line (the run's assignments and sandbox), then one line per
student, flushed and fsynced: a run that stops half-way keeps every result, and ``gmm-grade
--resume`` grades only the students missing. A torn last line is ignored (graded again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

JOURNAL = "journal.jsonl"


class InterruptedRunError(RuntimeError):
    """A run stopped before every student was graded (e.g. its Dask scheduler was lost); the
    journal keeps every result it had."""


def path(out: Path) -> Path:
    return Path(out) / JOURNAL


def read(out: Path) -> tuple[dict, dict[str, list]]:
    """(header, {student: results}) of the journal in ``out``; FileNotFoundError if none."""
    lines = path(out).read_text().splitlines()
    header, results = {}, {}
    for n, line in enumerate(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # torn by a crash while writing: that student is graded again
        if n == 0:
            header = entry
        elif isinstance(entry, dict) and "student" in entry:
            results[entry["student"]] = entry["results"]
    if not header.get("journal"):
        raise ValueError(f"{path(out)} is not a gmm-grade journal (no header line)")
    return header, results


class Journal:
    """Append-only writer; ``resume=False`` starts a new journal (the header), ``True`` appends."""

    def __init__(self, out: Path, header: dict, resume: bool = False):
        self.file = open(path(out), "a" if resume else "w")
        if not resume:
            self._write({"journal": 1, **header})
        elif self.file.tell() and not path(out).read_bytes().endswith(b"\n"):
            self.file.write("\n")  # after a torn line: the next entry starts a line of its own

    def add(self, student: str, results: list) -> None:
        self._write({"student": student, "results": results})

    def _write(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
