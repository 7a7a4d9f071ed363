"""The calibration for each collection: the file ``penny calibrate`` wrote for it, else the default."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from assistant.calibration.model import Calibration, CalibrationError
from assistant.calibration.stamp import DEFAULT, Mismatch, Running, mismatches

log = logging.getLogger("penny.calibration")

_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9._-]{3,200}$")


def collection_calibration_path(directory: Path, collection: str) -> Path:
    """Where ``penny calibrate --collection`` writes, and the service looks, for one collection."""
    if not _COLLECTION_NAME.match(collection):
        raise CalibrationError(f"{collection!r} is not a collection name")
    return Path(directory) / f"{collection}.json"


class Calibrations:
    """The calibration for each collection: its own file in ``directory`` when one was fitted on it,
    else the default. A file written while serving is picked up on its next question (checked by mtime);
    an unreadable one is logged and the default used, so a bad refit never takes answering down."""

    def __init__(self, default: Calibration, directory: Path | None = None) -> None:
        self.default = default
        self.directory = directory
        self._loaded: dict[str, tuple[float, Calibration]] = {}
        self._lock = threading.Lock()

    def for_collection(self, collection: str | None) -> Calibration:
        if self.directory is None or not collection or not _COLLECTION_NAME.match(collection):
            return self.default
        path = collection_calibration_path(self.directory, collection)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return self.default
        with self._lock:
            cached = self._loaded.get(collection)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        try:
            calibration = Calibration.load(path)
        except CalibrationError as exc:
            log.warning("collection %s: %s; using the default calibration", collection, exc)
            return self.default
        with self._lock:
            self._loaded[collection] = (mtime, calibration)
        return calibration

    def collections(self) -> list[str]:
        """The collections with their own calibration file, by name."""
        if self.directory is None or not Path(self.directory).is_dir():
            return []
        names = (path.stem for path in Path(self.directory).glob("*.json"))
        return sorted(name for name in names if _COLLECTION_NAME.match(name))

    def mismatches(self, now: Running) -> dict[str, list[Mismatch]]:
        """What differs between ``now`` and what each calibration was fitted for: the default's under
        :data:`~assistant.calibration.stamp.DEFAULT`, then each collection's own, by name."""
        found = {DEFAULT: mismatches(self.default.stamp, now)}
        for collection in self.collections():
            calibration = self.for_collection(collection)
            if calibration is not self.default:  # an unreadable file is logged and judged by the default
                found[collection] = mismatches(calibration.stamp, now, collection)
        return found
