"""The evaluator's calibration: the models and their file (:mod:`.model`), each collection's own file
(:mod:`.store`) and the fitting (:mod:`.fitting`). The service and ``eval`` both build on it; it imports
nothing from ``eval``."""

from assistant.calibration.fitting import auroc, fit
from assistant.calibration.model import (
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    default_calibration_path,
    paid_helps_mixture,
)
from assistant.calibration.store import Calibrations, collection_calibration_path

__all__ = [
    "FORMAT_VERSION",
    "Calibration",
    "CalibrationError",
    "Calibrations",
    "auroc",
    "collection_calibration_path",
    "default_calibration_path",
    "fit",
    "paid_helps_mixture",
]
