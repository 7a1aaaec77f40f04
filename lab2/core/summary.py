"""How a run ends, as its summary says: the statuses a training run ends with and the summary of one that failed.

Plain values, no torch: the trainer (lab2.core.train) sets them, the run record
(lab2.runs.record) stores them in summary.json, and the book's pages (lab2.report) read
them without loading torch. The states of a run folder that only the record knows (a
summary that does not parse, no folder yet) are the record's own.
"""

from typing import NamedTuple


class Metric(NamedTuple):
    label: str  # how a reader names it
    kind: str  # "loss" or "accuracy": a difference of a loss is sized relative to the number, of an accuracy in points


# The metrics a summary reports, in the report's order: the one table of their names.
METRICS = {
    "train_loss": Metric("training loss", "loss"), "train_acc": Metric("training accuracy", "accuracy"),
    "val_loss": Metric("validation loss", "loss"), "val_acc": Metric("validation accuracy", "accuracy"),
    "best_val_acc": Metric("best validation accuracy", "accuracy"), "test_loss": Metric("test loss", "loss"),
    "test_acc": Metric("test accuracy", "accuracy"),
}

OK = "ok"  # trained to its last epoch
DIVERGED = "diverged"  # stopped when its loss ran away (lab2.core.train.DIVERGED_LOSS); keeps the epochs before
FINISHED_STATUSES = (OK, DIVERGED)  # runs that ended as they should: a sweep keeps them
FAILED = "failed"  # ended without metrics; the next sweep tries it again

# What every summary holds (a run's summary may hold more: its error, parameter count, diverged epoch).
SUMMARY_KEYS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "best_epoch",
    "test_loss", "test_acc", "status", "seconds",
)


def failed_summary(error: str, seconds: float) -> dict:
    """The summary of a run that did not finish: status 'failed', the error, no metrics."""
    return {**{key: None for key in SUMMARY_KEYS}, "status": FAILED, "seconds": seconds, "error": error}
