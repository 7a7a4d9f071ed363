"""The evaluator's calibration: the models and their file (:mod:`.model`), what a file was fitted for and
what differs in the running Penny (:mod:`.stamp`), each collection's own file (:mod:`.store`), the fitting
(:mod:`.fitting`) and the core of self-calibration (:mod:`.self_calibration`).
The service, the CLI and ``eval`` build on it; it imports nothing from ``eval``."""

from assistant.calibration.fitting import auroc, fit
from assistant.calibration.model import (
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    default_calibration_path,
    paid_helps_mixture,
)
from assistant.calibration.self_calibration import (
    LabelledAnswers,
    LedgerRefit,
    TooFewLabels,
    collection_work_dir,
    refit_from_ledger,
)
from assistant.calibration.stamp import (
    LocalModelId,
    Mismatch,
    PaidModel,
    RunCount,
    Running,
    Stamp,
    mismatches,
    running,
)
from assistant.calibration.store import Calibrations, collection_calibration_path

__all__ = [
    "FORMAT_VERSION",
    "Calibration",
    "CalibrationError",
    "Calibrations",
    "LabelledAnswers",
    "LedgerRefit",
    "LocalModelId",
    "Mismatch",
    "PaidModel",
    "RunCount",
    "Running",
    "Stamp",
    "TooFewLabels",
    "auroc",
    "collection_calibration_path",
    "collection_work_dir",
    "default_calibration_path",
    "fit",
    "mismatches",
    "paid_helps_mixture",
    "refit_from_ledger",
    "running",
]
