"""Feature flags: a new code path ships switched off, is switched on for a while, and back off
at once if it misbehaves, without a release (the rollback plan's first lever, before a canary's
weight or a migration's downgrade).

Flags are named `<service>.<flag>` and are off unless set. `R3MES_FEATURES` sets them for the
process's life (JSON: {"users.network_stats_cache": true}); `R3MES_FEATURES_FILE` names a JSON
file of the same shape whose flags win, read again whenever its modification time changes, so
an operator (or a Kubernetes ConfigMap mounted as a file) flips a flag in a running process.
Code asks `features.enabled(name)` on every call that takes the path, never once at start, so
the next call after a change follows it. A file that cannot be parsed keeps the flags it had
(logged), rather than switching every flag off at once; a file removed gives its flags up.
Write the file whole and rename it into place, so no call reads it half written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from services.core.settings import Settings

logger = logging.getLogger(__name__)


class Features:
    def __init__(self, defaults: Mapping[str, bool], file: Path | None = None) -> None:
        self._defaults = dict(defaults)
        self._file = file
        self._from_file: dict[str, bool] = {}
        # The file as last read: its modification time, size and inode (a timestamp alone may
        # not move between two writes in the same clock tick; a rename makes a new inode).
        self._seen: tuple[int, int, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Features:
        return cls(settings.features, settings.features_file)

    def enabled(self, name: str) -> bool:
        """Whether flag `name` is on now: one stat() of the file per call, a read only when it
        changed (about a microsecond)."""
        self._refresh()
        return self._from_file.get(name, self._defaults.get(name, False))

    def _refresh(self) -> None:
        if self._file is None:
            return
        try:
            status = os.stat(self._file)
            version: tuple[int, int, int] | None = (
                status.st_mtime_ns,
                status.st_size,
                status.st_ino,
            )
        except OSError:
            version = None
        if version == self._seen:
            return
        self._seen = version
        if version is None:
            self._from_file = {}  # no file: the settings' flags alone
            return
        try:
            flags = json.loads(self._file.read_text())
            if not isinstance(flags, dict) or not all(isinstance(v, bool) for v in flags.values()):
                raise ValueError("not a JSON object of true and false")
        except (OSError, ValueError) as error:
            logger.error("feature flags file %s kept as it was: %s", self._file, error)
            return
        self._from_file = flags
        logger.info("feature flags from %s: %s", self._file, flags)
