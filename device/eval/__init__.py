"""Scoring on the device side, in plain numpy: classification metrics, beat-by-beat
detection scoring (EC57 matching), and scoring the daemon's event files."""

from vitaledge.device.eval.metrics import (  # noqa: F401
    classification_metrics,
    confusion_matrix,
    format_confusion,
    format_report,
)
from vitaledge.device.eval.score_events import (  # noqa: F401
    format_score,
    load_events,
    score_events,
)
from vitaledge.device.eval.scoring import (  # noqa: F401
    DetectionScore,
    match_beats,
    score_detections,
)

