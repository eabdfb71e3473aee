"""The one featurizer that training and serving share: a ``FeatureSpec`` and raw data into a
float32 feature matrix, through the kernels, with a clear error for data that does not fit the
spec."""

import numpy as np

from edgewatch.agent.features import FeatureError, FeatureSpec, band_bins
from edgewatch.agent.windows import frame
from edgewatch.kernels import runtime
from edgewatch.kernels.layout import ROLLING_FEATURES, RollingState, hann, make_plan

# Samples whose fourth powers (kurtosis) and squares (band power, float32 output) stay finite.
MIN_MAGNITUDE = 1e-30
MAX_MAGNITUDE = 1e15
# Plans kept for the envelope bins of the speeds seen; beyond it they are made afresh.
MAX_PLANS = 4096


class Featurizer:
    """Features of one spec's data, float32 ``[n, len(spec.feature_names)]``.

    Waveform data is ``[n, channels, window]`` float32 or float64 windows; process and record
    data are rows ``[n, channels]``. A process featurizer streams: its rolling state carries
    from call to call, so rows may be fed as they arrive. Bad data raises ``FeatureError`` and
    leaves that state as it was. ``out``, if given, is a float32 or float64 ``[n, F]`` array to
    write into instead of a new one.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.width = len(spec.feature_names)
        self._kernels = runtime.active()
        if spec.kind == "waveform":
            self._plan_waveform(spec)
        elif spec.kind == "process":
            assert spec.history is not None and spec.ewma_alpha is not None
            self._alpha = spec.ewma_alpha
            self._state = RollingState.empty(spec.history, len(spec.channels))
            assert spec.rolling is not None
            self._columns: np.ndarray | None = None
            if spec.rolling != ROLLING_FEATURES:
                picked = [ROLLING_FEATURES.index(r) for r in spec.rolling]
                width = len(ROLLING_FEATURES)
                self._columns = np.array(
                    [c * width + k for c in range(len(spec.channels)) for k in picked]
                )

    def _plan_waveform(self, spec: FeatureSpec) -> None:
        """Everything the kernels need beside the samples, once per dtype; with a speed
        channel, a plan for each set of envelope bins that a window's speed reads."""
        assert spec.window is not None and spec.sample_rate is not None
        assert spec.families is not None
        n, rate = spec.window, spec.sample_rate
        self._tail = (len(spec.channels), n)
        self._stride = len(spec.channel_feature_names)
        offset = 0
        self._offsets = {}
        for family, names in spec.family_feature_names.items():
            self._offsets[family] = offset
            offset += len(names)
        no_bins = np.zeros(0, dtype=np.int64)
        self._bands: tuple[np.ndarray, np.ndarray] = (
            band_bins(spec.band_edges, rate, n) if spec.band_edges is not None else (no_bins,) * 2
        )
        pass_lo, pass_hi = band_bins(spec.envelope_band or (0.0, rate / 2), rate, n)
        self._pass = (int(pass_lo[0]), int(pass_hi[0]))
        self._orders = None
        if "envelope" in spec.families:
            defects = np.array(spec.defects_at(1.0))
            self._orders = np.concatenate([defects, 2 * defects]) * n / rate
        self._plans: dict[bytes, np.ndarray] = {}
        plan = self._plan(np.array([spec.shaft_hz or 0.0]))
        self._kernel_args = {}
        for dtype in (np.float32, np.float64):
            window = hann(n).astype(dtype)
            self._kernel_args[np.dtype(dtype).char] = (
                window,
                float(window.sum(dtype=np.float64)),
                float((window.astype(np.float64) ** 2).sum()),
                float(rate),
                plan,
            )

    def _plan(self, speed: np.ndarray) -> np.ndarray:
        """The kernels' plan for a shaft at ``speed`` Hz (a one-element array)."""
        bins = np.zeros(0, np.int64)
        if self._orders is not None:
            bins = np.rint(self._orders * speed[0]).astype(np.int64)
        key = bins.tobytes()
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = make_plan(
                self._stride, self._offsets, *self._bands, self._pass, bins
            )
        return plan

    def __call__(self, data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.spec.kind == "waveform":
            # The usual case in as few steps as can be: this runs once per window on a gateway.
            args = self._kernel_args.get(data.dtype.char) if type(data) is np.ndarray else None
            if args is None or data.shape[1:] != self._tail or not data.flags.c_contiguous:
                data = self._checked(data, self._tail, "windows x channels x samples")
                args = self._kernel_args[data.dtype.char]
            n = data.shape[0]
            out = np.empty((n, self.width), np.float32) if out is None else self._output(n, out)
            if self.spec.speed is not None:
                self._by_speed(data, args, out)
            elif not self._kernels.windows(data, *args, out):
                self._explain_nonfinite(data)
            return out
        rows = self._checked(data, (len(self.spec.channels),), "rows x channels")
        out = self._output(rows.shape[0], out)
        bad = ~np.isfinite(rows)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise FeatureError(
                f"data: row {r}, channel {c} ({self.spec.channels[c]}) is NaN or inf"
            )
        if self.spec.kind == "record":
            np.copyto(out, rows, casting="same_kind")
        elif self._columns is None:
            self._kernels.rolling(rows, self._alpha, *self._state, out)
        else:
            every = np.empty((rows.shape[0], len(ROLLING_FEATURES) * rows.shape[1]), out.dtype)
            self._kernels.rolling(rows, self._alpha, *self._state, every)
            out[:] = every[:, self._columns]
        return out

    def _by_speed(self, data: np.ndarray, args: tuple[object, ...], out: np.ndarray) -> None:
        """The vibration channels' features of windows of the same envelope bins together,
        each window's speed last."""
        speeds = shaft_speeds(self.spec, data)
        bad = ~in_range(self.spec, speeds)
        if bad.any():
            w = int(np.flatnonzero(bad)[0])
            raise FeatureError(
                f"data: window {w} has no shaft speed in range on its speed channel "
                f"(measured {speeds[w]:.4g} Hz)"
            )
        vibration = np.ascontiguousarray(data[:, self.spec.vibration])
        features = np.empty((len(data), self.width - 1), out.dtype)
        keys = np.rint(speeds[:, None] * (self._orders if self._orders is not None else 0.0))
        _, group = np.unique(keys, axis=0, return_inverse=True)
        for g in range(int(group.max()) + 1):
            take = np.flatnonzero(group.ravel() == g)
            part = np.empty((len(take), self.width - 1), out.dtype)
            plan = self._plan(speeds[take[:1]])
            if not self._kernels.windows(vibration[take], *args[:4], plan, part):
                self._explain_nonfinite(vibration[take])
            features[take] = part
        out[:, :-1] = features
        out[:, -1] = speeds

    def _checked(self, data: np.ndarray, tail: tuple[int, ...], axes: str) -> np.ndarray:
        if not isinstance(data, np.ndarray):
            raise FeatureError(f"data: expected a numpy array, got {type(data).__name__}")
        if data.dtype.char not in "fd":
            raise FeatureError(f"data: expected float32 or float64 samples, got {data.dtype}")
        if data.shape[1:] != tail:
            want = ", ".join(["n", *map(str, tail)])
            raise FeatureError(f"data: expected shape [{want}] ({axes}), got {list(data.shape)}")
        return data if data.flags.c_contiguous else np.ascontiguousarray(data)

    def _output(self, n: int, out: np.ndarray | None) -> np.ndarray:
        if out is None:
            return np.empty((n, self.width), dtype=np.float32)
        if (
            type(out) is not np.ndarray
            or out.dtype.char not in "fd"
            or out.shape != (n, self.width)
            or not out.flags.c_contiguous
        ):
            raise FeatureError(
                f"out: expected a C-contiguous float32 or float64 array of shape [{n}, "
                f"{self.width}]"
            )
        return out

    def _explain_nonfinite(self, windows: np.ndarray) -> None:
        bad = ~np.isfinite(windows).all(axis=-1)
        if bad.any():
            w, c = np.argwhere(bad)[0]
            raise FeatureError(
                f"data: window {w}, channel {c} ({self.spec.channels[c]}) holds NaN or inf"
            )
        magnitude = np.abs(windows[windows != 0])
        raise FeatureError(
            f"data: features are not finite for samples of magnitude {magnitude.min():.3g} to "
            f"{magnitude.max():.3g}; keep them between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} "
            "(their fourth powers must stay representable)"
        )


def shaft_speeds(spec: FeatureSpec, windows: np.ndarray) -> np.ndarray:
    """Each window's shaft speed in Hz, from its speed channel: a tachometer's rising edges
    (through the midpoint of the window's least and greatest sample) span whole pulses; a
    value channel's median, scaled. NaN for a window with fewer than two edges, or a value
    that is not finite.

    >>> spec = FeatureSpec(kind="waveform", sample_rate=1000.0, window=256, channels=["x", "t"],
    ...                    speed={"channel": "t", "range_hz": [1, 100]})
    >>> pulses = (np.arange(256) % 40 < 5).astype(np.float32)  # 25 pulses a second
    >>> windows = np.stack([np.zeros(256), pulses])[None].astype(np.float32)
    >>> shaft_speeds(spec, windows).round(3).tolist()
    [25.0]
    """
    speed = spec.speed
    assert speed is not None and spec.sample_rate is not None
    channel = windows[:, spec.channels.index(speed.channel)].astype(np.float64)
    if speed.kind == "value":
        with np.errstate(invalid="ignore"):
            return np.asarray(np.median(channel, axis=1) * speed.scale, np.float64)
    middle = (channel.min(axis=1) + channel.max(axis=1)) / 2
    high = channel > middle[:, None]
    rising = ~high[:, :-1] & high[:, 1:]
    edges = rising.sum(axis=1)
    first = rising.argmax(axis=1)
    last = rising.shape[1] - 1 - rising[:, ::-1].argmax(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        speeds = (edges - 1) * spec.sample_rate / (last - first) / speed.pulses_per_rev
    speeds[edges < 2] = np.nan
    return np.asarray(speeds, np.float64)


def in_range(spec: FeatureSpec, speeds: np.ndarray) -> np.ndarray:
    """Which speeds lie within the speed channel's ``range_hz`` (NaN does not)."""
    assert spec.speed is not None
    lo, hi = spec.speed.range_hz
    return np.asarray((speeds >= lo) & (speeds <= hi))


def featurize(spec: FeatureSpec, data: np.ndarray) -> np.ndarray:
    """Features of ``data`` under ``spec``, from a fresh state; see ``Featurizer``."""
    return Featurizer(spec)(data)


def recording_features(spec: FeatureSpec, samples: np.ndarray) -> np.ndarray:
    """Features of a recording ``samples[n, channels]`` in time order: one row per window of
    a waveform spec, one per sample otherwise."""
    if spec.kind != "waveform":
        return featurize(spec, samples)
    assert spec.window is not None and spec.hop is not None
    windows = frame(np.ascontiguousarray(samples.T), spec.window, spec.hop)
    if not len(windows):
        raise FeatureError(f"{len(samples)} samples hold no {spec.window}-sample window")
    return featurize(spec, windows)
