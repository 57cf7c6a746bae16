"""Fixed-length beat windows around R peaks, in two named conventions.

``kachuee``  the layout of the Kaggle "ECG Heartbeat Categorization" set (Kachuee et al.
             2018): 125 Hz, starts at the R peak, length 1.2 x the median RR interval,
             scaled to [0, 1], cropped or zero-padded to 187 samples. The median RR is
             causal (the last ``rr_context`` intervals ending at this beat) so a stream
             computes it exactly as a whole record does.
``centered`` a fixed number of seconds before and after the R peak.

Windows are cut from the (causally filtered) signal at its own rate and resampled to the
model rate with a polyphase FIR. The cut is aligned to the resampling grid and carries
the FIR's reach as margin, so a window depends only on samples near its beat: a stream
that holds those samples produces bit-for-bit the window the whole record produces.
A beat whose window (with margin) does not fit inside the signal is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vitaledge.device.dsp.filters import FilterSpec
from vitaledge.device.dsp.normalize import METHODS, normalize
from vitaledge.device.dsp.resample import filter_half_len_in, rate_ratio, resample
from vitaledge.device.dsp.spec_fields import (
    construct,
    positive,
    read_fields,
    require,
    sample_rate,
)

CONVENTIONS = ("kachuee", "centered")


#: Fields a window spec must give: a default in their place would cut other windows than
#: the model was trained on (a manifest with ``length`` deleted was read as 187 samples).
GEOMETRY = ("convention", "fs", "length")


@dataclass(frozen=True)
class WindowSpec:
    """How a beat window is made; recorded with every model (config and manifest)."""

    convention: str = "kachuee"
    fs: float = 125.0
    length: int = 187
    before_s: float = 0.0
    rr_factor: float = 1.2
    rr_context: int = 8
    default_rr_s: float = 0.8
    normalize: str = "minmax"
    filter: FilterSpec | None = field(default_factory=FilterSpec)

    def __post_init__(self) -> None:
        require(self.convention in CONVENTIONS, "convention",
                f"{self.convention!r} is not one of {CONVENTIONS}")
        require(self.normalize in METHODS, "normalize",
                f"{self.normalize!r} is not one of {METHODS}")
        require(self.length > 0, "length", f"expected a positive int, got {self.length!r}")
        sample_rate(self, "fs")
        positive(self, "rr_factor", "rr_context", "default_rr_s")
        if self.convention == "centered":
            require(0 <= self.n_before < self.length, "before_s",
                    f"{self.before_s:g} s at {self.fs:g} Hz is {self.n_before} samples "
                    f"before the R peak, not within the window's {self.length}: a centered "
                    "window must leave room after the R peak")

    @classmethod
    def kachuee(cls, **kw) -> WindowSpec:
        return cls(convention="kachuee", **kw)

    @classmethod
    def centered(cls, before_s: float = 0.25, after_s: float = 0.45, fs: float = 125.0,
                 normalize: str = "zscore", **kw) -> WindowSpec:
        length = int(round(before_s * fs)) + int(round(after_s * fs))
        return cls(convention="centered", fs=fs, length=length, before_s=before_s,
                   normalize=normalize, **kw)

    @property
    def n_before(self) -> int:
        """Output samples before the R peak (0 for kachuee)."""
        return int(round(self.before_s * self.fs)) if self.convention == "centered" else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filter"] = self.filter.to_dict() if self.filter is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict | WindowSpec, where: str = "window") -> WindowSpec:
        """From a spec dict (absent fields take their defaults, but for the window's
        geometry, ``GEOMETRY``, which every spec ever written holds; unknown ones are errors);
        errors are :class:`~.spec_fields.SpecError` naming the field under ``where``."""
        if isinstance(d, WindowSpec):
            return d
        kw = read_fields(cls, d, where, {"filter": FilterSpec.from_dict}, require_all=False)
        missing = [k for k in GEOMETRY if k not in kw]
        require(not missing, where, f"missing fields {missing}")
        kw.setdefault("filter", None)
        return construct(cls, kw, where)


def median_rr(rr_history: np.ndarray, spec: WindowSpec, fs_in: float) -> float:
    """Nominal beat period T (source samples) from the recent RR intervals."""
    if len(rr_history) == 0:
        return spec.default_rr_s * fs_in
    # a handful of values: sorting in Python is ~50x cheaper than np.median's machinery,
    # and gives the same number (mean of the two middle values for an even count)
    v = sorted(float(r) for r in rr_history[-spec.rr_context:])
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2.0


@dataclass(frozen=True)
class Cut:
    """Where one window comes from: source span [start, stop) and output slice."""

    start: int
    stop: int
    out_from: int
    out_len: int


def plan_cut(r: int, rr_med: float, fs_in: float, spec: WindowSpec) -> Cut:
    """Source span needed for the window of the beat whose R peak is at sample ``r``."""
    up, down = rate_ratio(fs_in, spec.fs)
    h = filter_half_len_in(fs_in, spec.fs)
    nb = spec.n_before
    if spec.convention == "kachuee":
        n_after = int(round(spec.rr_factor * rr_med * up / down))
        n_after = max(1, min(n_after, spec.length))
    else:
        n_after = spec.length - nb
    k = int(np.ceil((nb * down / up + h) / down)) if (up, down) != (1, 1) else nb
    step = down if (up, down) != (1, 1) else 1
    start = r - k * step
    stop = r + int(np.ceil(n_after * down / up)) + h + 1
    r_out = k * up if (up, down) != (1, 1) else k
    return Cut(start=start, stop=stop, out_from=r_out - nb, out_len=nb + n_after)


def window_from_span(span: np.ndarray, cut: Cut, fs_in: float, spec: WindowSpec) -> np.ndarray:
    """Make the model window from ``span`` = source samples [cut.start, cut.stop)."""
    y = resample(span, fs_in, spec.fs)[cut.out_from: cut.out_from + cut.out_len]
    w = normalize(y, spec.normalize)
    out = np.zeros(spec.length, dtype=np.float32)
    out[: len(w)] = w[: spec.length]
    return out


def extract_beats(x_filtered: np.ndarray, fs_in: float, rpeaks: np.ndarray,
                  spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Windows for the beats at ``rpeaks`` of an already filtered signal.

    Returns ``(X, kept)``: X has shape (n_kept, spec.length), ``kept`` the indices into
    ``rpeaks`` of the beats whose window fits inside the signal (in order).
    """
    rpeaks = np.asarray(rpeaks, dtype=np.int64)
    rr = np.diff(rpeaks).astype(np.float64)
    windows, kept = [], []
    for i, r in enumerate(rpeaks):
        hist = rr[max(0, i - spec.rr_context): i]
        cut = plan_cut(int(r), median_rr(hist, spec, fs_in), fs_in, spec)
        if cut.start < 0 or cut.stop > len(x_filtered):
            continue
        windows.append(window_from_span(x_filtered[cut.start: cut.stop], cut, fs_in, spec))
        kept.append(i)
    X = np.stack(windows) if windows else np.zeros((0, spec.length), np.float32)
    return X, np.asarray(kept, dtype=np.int64)
