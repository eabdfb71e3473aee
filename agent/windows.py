"""Cutting signals into the windows the featurizer reads."""

import numpy as np


def frame(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Windows ``[n, ..., window]`` of ``signal[..., samples]``, starting every ``hop`` samples.

    A tail shorter than a window is left out.

    >>> frame(np.arange(7), 4, 2).tolist()
    [[0, 1, 2, 3], [2, 3, 4, 5]]
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    if signal.shape[-1] < window:
        return np.empty((0, *signal.shape[:-1], window), dtype=signal.dtype)
    views = np.lib.stride_tricks.sliding_window_view(signal, window, axis=-1)[..., ::hop, :]
    return np.ascontiguousarray(np.moveaxis(views, -2, 0))
