"""Signal processing: the one preprocessing implementation, used by the daemon and imported by
training, so a model sees the same numbers in both. Streaming forms keep state across
chunks and equal the batch forms. Plain numpy throughout: ``scipy.signal`` alone would
cost the daemon about 75 MB resident."""

from vitaledge.device.dsp.filters import (  # noqa: F401
    CausalFilter,
    FilterSpec,
    apply_filter,
    design,
)
from vitaledge.device.dsp.matching import match_beats  # noqa: F401
from vitaledge.device.dsp.normalize import (  # noqa: F401
    METHODS,
    normalize,
)
from vitaledge.device.dsp.resample import (  # noqa: F401
    filter_half_len_in,
    rate_ratio,
    resample,
)
from vitaledge.device.dsp.rhythm import (  # noqa: F401
    RhythmStats,
)
from vitaledge.device.dsp.rpeaks import (  # noqa: F401
    RPeakDetector,
    detect_rpeaks,
    sliding_max,
)
from vitaledge.device.dsp.rr import FEATURES as RR_FEATURES  # noqa: F401
from vitaledge.device.dsp.rr import RRFeatures, RRSpec, rr_features  # noqa: F401
from vitaledge.device.dsp.signal_buffer import (  # noqa: F401
    SignalBuffer,
)
from vitaledge.device.dsp.signal_quality import (  # noqa: F401
    Change,
    Fault,
    SignalMonitor,
)
from vitaledge.device.dsp.windows import (  # noqa: F401
    CONVENTIONS,
    Cut,
    WindowSpec,
    extract_beats,
    median_rr,
    plan_cut,
    window_from_span,
)
