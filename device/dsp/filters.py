"""Causal IIR filtering of ECG, identical in batch and streaming use (and a causal FIR,
:class:`StreamingFir`, for the R-peak detector's derivative and moving-window integration).

Zero-phase filters (filtfilt) need the future and cannot run on a stream, so the device
and training both use the same causal Butterworth sections. State starts at the filter's
step response to the first sample, so a signal with a DC offset does not ring at start.

Plain numpy (no scipy): the daemon has a memory budget and ``scipy.signal`` alone costs
about 75 MB resident. The design is the textbook one (analog Butterworth prototype,
pre-warped band edges, bilinear transform); filtering runs the cascade as one state-space
system evaluated a block at a time, so no Python loop runs per sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from vitaledge.device.dsp.spec_fields import construct, read_fields, require

#: The highest Butterworth order a spec may ask for: every filter here is of order 2; a
#: manifest asking 200 passed every check and took minutes and a gigabyte to start.
MAX_ORDER = 8


@dataclass(frozen=True)
class FilterSpec:
    """Band-pass (or high/low-pass when one edge is None) Butterworth filter."""

    low_hz: float | None = 0.5
    high_hz: float | None = 40.0
    order: int = 2

    def __post_init__(self) -> None:
        require(not isinstance(self.order, bool) and isinstance(self.order, int)
                and 1 <= self.order <= MAX_ORDER, "order",
                f"expected an integer from 1 to {MAX_ORDER}, got {self.order!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | FilterSpec | None, where: str = "filter") -> FilterSpec | None:
        """From a spec dict (absent fields take their defaults); None is no filter. Errors
        are :class:`~.spec_fields.SpecError` naming the field under ``where``."""
        if d is None or isinstance(d, FilterSpec):
            return d
        return construct(cls, read_fields(cls, d, where, require_all=False), where)


def _check_spec(spec: FilterSpec, fs: float) -> None:
    nyq = fs / 2.0
    if spec.high_hz is not None and spec.high_hz >= nyq:
        raise ValueError(f"filter high edge {spec.high_hz} Hz is not below Nyquist ({nyq} Hz)")
    if spec.low_hz is None and spec.high_hz is None:
        raise ValueError("filter spec needs low_hz, high_hz or both")
    for name in ("low_hz", "high_hz"):
        f = getattr(spec, name)
        if f is not None and not 0 < f < nyq:
            raise ValueError(f"filter {name} = {f} Hz must be in (0, {nyq}) Hz")
    if spec.low_hz is not None and spec.high_hz is not None and spec.low_hz >= spec.high_hz:
        raise ValueError(f"filter band {spec.low_hz}-{spec.high_hz} Hz: low edge must be "
                         "below the high edge")
    if int(spec.order) != spec.order or spec.order < 1:
        raise ValueError(f"filter order must be a positive integer, got {spec.order}")


def _prototype_poles(order: int) -> np.ndarray:
    """Poles of the order-``order`` analog Butterworth low-pass with cutoff 1 rad/s."""
    k = np.arange(order)
    p = -np.exp(1j * np.pi * (2 * k - order + 1) / (2 * order))
    if order % 2:
        p[order // 2] = -1.0  # the real pole of an odd order, exactly
    return p


def _bandpass_roots(p: np.ndarray, bw: float, w0: float) -> np.ndarray:
    """Roots of s^2 - p*bw*s + w0^2 for each low-pass pole p (low-pass to band-pass map)."""
    half = p * bw / 2
    disc = np.sqrt(half * half - w0 * w0)
    # the larger root directly, the smaller from the product w0^2 (no cancellation)
    big = np.where(np.abs(half + disc) >= np.abs(half - disc), half + disc, half - disc)
    return np.concatenate([big, w0 * w0 / big])


def _zpk(spec: FilterSpec, fs: float) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Digital poles, zeros (all at +1 or -1), gain and kind of the Butterworth filter."""
    n = int(spec.order)
    proto = _prototype_poles(n)
    t = 2.0 * fs  # bilinear transform s = t (z - 1) / (z + 1)

    def warp(f: float) -> float:
        return t * np.tan(np.pi * f / fs)

    if spec.low_hz is not None and spec.high_hz is not None:
        w1, w2 = warp(spec.low_hz), warp(spec.high_hz)
        pa = _bandpass_roots(proto, w2 - w1, np.sqrt(w1 * w2))
        za = np.zeros(n)
        ka = (w2 - w1) ** n
        kind = "bandpass"
    elif spec.low_hz is not None:
        pa = warp(spec.low_hz) / proto
        za = np.zeros(n)
        ka = 1.0
        kind = "highpass"
    else:
        pa = warp(spec.high_hz) * proto
        za = np.zeros(0)
        ka = warp(spec.high_hz) ** n
        kind = "lowpass"
    pd = (t + pa) / (t - pa)
    zd = np.concatenate([(t + za) / (t - za), -np.ones(len(pa) - len(za))])
    k = ka * float(np.real(np.prod(t - za) / np.prod(t - pa)))
    return zd, pd, k, kind


def _pole_pairs(p: np.ndarray) -> list[np.ndarray]:
    """Split poles into conjugate pairs, pairs of real poles and at most one lone real pole,
    ordered by distance to the unit circle (closest last, as is usual for cascades)."""
    tol = 1e-12
    real = np.sort(p[np.abs(p.imag) <= tol * np.abs(p)].real)
    upper = p[p.imag > tol * np.abs(p)]
    groups = [np.array([q, np.conj(q)]) for q in upper]
    groups += [real[i:i + 2].astype(complex) for i in range(0, len(real), 2)]
    return sorted(groups, key=lambda g: -float(np.min(1 - np.abs(g))))


def design(spec: FilterSpec, fs: float) -> np.ndarray:
    """Second-order sections (n_sections, 6) ``[b0 b1 b2 1 a1 a2]`` for ``spec`` at sample
    rate ``fs``: the same cascade transfer function as ``scipy.signal.butter(...,
    output="sos")`` (section pairing may differ)."""
    _check_spec(spec, fs)
    _, pd, k, kind = _zpk(spec, fs)
    # every section of one filter has the same zeros: -1 (low-pass), +1 (high-pass), or
    # one of each (band-pass)
    num2 = {"lowpass": [1.0, 2.0, 1.0], "highpass": [1.0, -2.0, 1.0],
            "bandpass": [1.0, 0.0, -1.0]}[kind]
    num1 = {"lowpass": [1.0, 1.0, 0.0], "highpass": [1.0, -1.0, 0.0]}.get(kind)
    sos = []
    for g in _pole_pairs(pd):
        if len(g) == 2:
            den = [1.0, float(-np.real(g[0] + g[1])), float(np.real(g[0] * g[1]))]
            sos.append(num2 + den)
        else:
            sos.append(num1 + [1.0, float(-g[0].real), 0.0])
    out = np.array(sos, dtype=np.float64)
    out[0, :3] *= k
    return out


def _section_ss(sec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(A, B, C, D) of one section in normal form: A is a scaled rotation (complex poles)
    or diagonal (real poles), so its powers never exceed 1 in norm, and B and C are
    balanced. Companion-type forms (direct form II) have powers of norm ~1 / (1 - |p|)
    for poles near z = 1, and block filtering would amplify rounding by as much."""
    b0, b1, b2, _, a1, a2 = sec
    if a2 == 0 and b2 == 0:  # first order
        A = np.array([[-a1]])
        B = np.array([b1 - a1 * b0])
        C = np.array([1.0])
    else:
        # transposed direct form II, then a change of basis to the poles' eigenvectors
        A0 = np.array([[-a1, 1.0], [-a2, 0.0]])
        B0 = np.array([b1 - a1 * b0, b2 - a2 * b0])
        lam, vec = np.linalg.eig(A0)
        if abs(lam[0].imag) > 0:
            v = vec[:, 0] if lam[0].imag > 0 else vec[:, 1]
            T = np.column_stack([v.real, v.imag])
        else:
            T = vec.real
        A = np.linalg.solve(T, A0 @ T)
        B = np.linalg.solve(T, B0)
        C = np.array([1.0, 0.0]) @ T
        if abs(lam[0].imag) > 0:
            c = np.sqrt(np.linalg.norm(B) / np.linalg.norm(C))
            B, C = B / c, C * c
            # exactly a scaled rotation (rounding in the basis change set aside)
            sig, om = lam[0].real, abs(lam[0].imag)
            w = om if A[0, 1] > 0 else -om
            A = np.array([[sig, w], [-w, sig]])
        else:
            c = np.sqrt(np.abs(B) / np.abs(C))
            B, C = B / c, C * c
            A = np.diag(lam.real)
    return A, B, C, float(b0)


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(A, B, C, D) of the whole cascade: the sections' states in turn, each section fed
    by the previous one's output."""
    A = np.zeros((0, 0))
    B = np.zeros(0)
    C = np.zeros(0)
    D = 1.0
    for sec in sos:
        As, Bs, Cs, Ds = _section_ss(sec)
        n, m = len(B), len(Bs)
        A2 = np.zeros((n + m, n + m))
        A2[:n, :n] = A
        A2[n:, :n] = np.outer(Bs, C)
        A2[n:, n:] = As
        A, B, C, D = A2, np.concatenate([B, Bs * D]), np.concatenate([Ds * C, Cs]), Ds * D
    return A, B, C, D


class _BlockIIR:
    """The cascade as x -> y over blocks of M samples, from precomputed responses: within
    a block, y[k] = (h * x)[k] + C A^k s, and the state moves on to
    A^L s + sum_k A^(L-1-k) B x[k]. Up to ``NB`` blocks are done at once: one batched FFT
    convolution, and the block-start states from one matrix product (the same recurrence
    one level up, with A^M in place of A)."""

    M = 512
    NB = 16
    DIRECT = 64  # chunks up to this length: plain np.convolve, no FFT

    def __init__(self, sos: np.ndarray):
        # tables in extended precision (where the platform has it): the realisation is
        # non-normal for poles near z = 1, and rounding would pile up over the powers
        A, B, C, D = (np.asarray(v, dtype=np.longdouble) for v in _state_space(sos))
        n, M, NB = len(B), self.M, self.NB
        obs = np.empty((M, n), dtype=np.longdouble)  # C A^k
        ctl = np.empty((M, n), dtype=np.longdouble)  # A^k B
        pw = np.empty((M + 1, n, n), dtype=np.longdouble)  # A^k
        obs[0], ctl[0], pw[0] = C, B, np.eye(n)
        for k in range(1, M + 1):
            pw[k] = A @ pw[k - 1]
            if k < M:
                obs[k] = obs[k - 1] @ A
                ctl[k] = A @ ctl[k - 1]
        # block-start states S[j] = AM^j s + sum_{i<j} AM^(j-1-i) V[i], AM = A^M
        am = np.empty((NB, n, n), dtype=np.longdouble)
        am[0] = np.eye(n)
        for j in range(1, NB):
            am[j] = pw[M] @ am[j - 1]
        carry = np.zeros((NB * n, NB * n), dtype=np.longdouble)
        for j in range(1, NB):
            for i in range(j):
                carry[j * n:(j + 1) * n, i * n:(i + 1) * n] = am[j - 1 - i]
        self.n = n
        self.obs = obs.astype(np.float64)
        self.pow = pw.astype(np.float64)
        self.ctl_rev = ctl[::-1].astype(np.float64)
        self.start = am.reshape(NB * n, n).astype(np.float64)
        self.carry = carry.astype(np.float64)
        self.h = np.concatenate([[D], obs[:-1] @ B]).astype(np.float64)
        self.h_f = np.fft.rfft(self.h, 2 * M)
        # steady state for a constant unit input: s = A s + B
        self.zi_unit = np.linalg.solve(np.eye(n) - A.astype(np.float64), B.astype(np.float64))

    def run(self, x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output for input ``x`` from state ``s``, and the state after it."""
        L, M = len(x), self.M
        if L <= self.DIRECT:
            y = np.convolve(x, self.h[:L])[:L] + self.obs[:L] @ s
            return y, self.pow[L] @ s + x @ self.ctl_rev[M - L:]
        seg = M * self.NB
        if L > seg:
            y = np.empty(L)
            for a in range(0, L, seg):
                y[a:a + seg], s = self.run(x[a:a + seg], s)
            return y, s
        K = -(-L // M)
        X = np.zeros((K, M))
        X.ravel()[:L] = x
        Y = np.fft.irfft(np.fft.rfft(X, 2 * M, axis=1) * self.h_f, 2 * M, axis=1)[:, :M]
        V = X @ self.ctl_rev  # each block's input share of the state at its end
        kn = K * self.n
        S = (self.start[:kn] @ s + self.carry[:kn, :kn] @ V.ravel()).reshape(K, self.n)
        Y += S @ self.obs.T
        r = L - (K - 1) * M
        s_end = self.pow[r] @ S[-1] + X[-1, :r] @ self.ctl_rev[M - r:]
        return Y.ravel()[:L], s_end


@lru_cache(maxsize=16)
def _block_iir(spec: FilterSpec, fs: float) -> _BlockIIR:
    """Tables for ``spec`` at ``fs``, built once (a few ms) and shared (read-only)."""
    return _BlockIIR(design(spec, fs))


class CausalFilter:
    """Stateful causal filter: ``process(chunk)`` over consecutive chunks equals one call
    on the concatenated signal, for any chunk sizes (to rounding, ~1e-15 relative)."""

    def __init__(self, spec: FilterSpec | None, fs: float):
        self.spec = spec
        self.fs = fs
        self._iir = _block_iir(spec, float(fs)) if spec is not None else None
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        self._zi = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float64)
        if self._iir is None or x.size == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._iir.zi_unit * x[0]
        y, self._zi = self._iir.run(x, self._zi)
        return y


def apply_filter(x: np.ndarray, fs: float, spec: FilterSpec | None) -> np.ndarray:
    """Filter a whole signal (the batch form of :class:`CausalFilter`)."""
    return CausalFilter(spec, fs).process(x)


class StreamingFir:
    """Stateful causal FIR filter y[n] = sum_k b[k] x[n-k], zero history at start.

    Keeps the last len(b) - 1 inputs; each output is the same dot product whatever the
    chunking, so chunked output equals whole-signal output bit for bit."""

    def __init__(self, b: np.ndarray):
        self.b = np.asarray(b, dtype=np.float64)
        self._hist = np.zeros(len(self.b) - 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return x.copy()
        xx = np.concatenate([self._hist, x])
        if len(self._hist):
            self._hist = xx[len(xx) - len(self._hist):].copy()
        return np.convolve(xx, self.b, mode="valid")
