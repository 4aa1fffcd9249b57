"""Stage caching for the pipeline: each stage's directory remembers the hash of its inputs.

A finished stage with the same input hash (and intact files) is skipped; an interrupted one
is resumed from its checkpoints; a stage whose inputs changed is redone from scratch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from distillrec import artifacts
from distillrec.errors import ArtifactError

STAGE_FILE = "stage.json"


def content_key(*parts) -> str:
    """sha256 of the JSON form of the inputs: same inputs, same key."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Stage:
    name: str
    directory: Path
    key: str

    def _recorded(self) -> dict | None:
        path = self.directory / STAGE_FILE
        if not path.exists():
            return None
        try:
            return artifacts.read_json(path)
        except ArtifactError:
            return None

    def is_done(self) -> bool:
        recorded = self._recorded()
        if not recorded or recorded.get("key") != self.key or recorded.get("status") != "done":
            return False
        try:
            artifacts.verify_manifest(self.directory)
        except ArtifactError:
            return False  # damaged output: redo rather than trust it
        return True

    def start(self) -> bool:
        """Prepare the directory; True when an interrupted attempt with the same inputs can resume."""
        recorded = self._recorded()
        if recorded and recorded.get("key") == self.key and recorded.get("status") == "running":
            return True
        if self.directory.exists():
            shutil.rmtree(self.directory)  # inputs changed (or damaged output): start clean
        self.directory.mkdir(parents=True)
        self._write_status("running")
        return False

    def reopen(self) -> None:
        """Mark a finished stage as running again, keeping its files (a study given more trials)."""
        self._write_status("running")

    def _write_status(self, status: str) -> None:
        artifacts.write_json(self.directory / STAGE_FILE, {"name": self.name, "key": self.key, "status": status})

    def finish(self) -> None:
        self._write_status("done")
        # The manifest covers every file, stage.json included, so re-verify after the update.
        path = self.directory / artifacts.MANIFEST
        manifest = artifacts.read_json(path) if path.exists() else {"kind": "stage"}
        artifacts.write_manifest(self.directory, kind=manifest.get("kind", "stage"),
                                 extra={k: v for k, v in manifest.items() if k not in ("kind", "versions", "files")})
