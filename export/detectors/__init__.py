"""The detectors edgewatch trains, by ``kind``.

Each lives in its own module, imported only when it is built: scikit-learn detectors never load
TensorFlow.
"""

from importlib import import_module

from edgewatch.export.detectors.base import Detector
from edgewatch.export.detectors.params import DetectorParams, EnsembleParams

_MODULES = {
    "isolation_forest": ("forest", "IsolationForestDetector"),
    "ocsvm": ("kernel", "OcsvmDetector"),
    "lof": ("kernel", "LofDetector"),
    "gmm": ("mixture", "GmmDetector"),
    "kmeans": ("clustering", "KmeansDetector"),
    "pca_t2q": ("pca", "PcaDetector"),
    "autoencoder": ("neural", "AutoencoderDetector"),
    "sequence_autoencoder": ("neural", "SequenceAutoencoderDetector"),
}


def build(params: DetectorParams) -> Detector:
    """An unfitted detector for ``params``."""
    if isinstance(params, EnsembleParams):
        from edgewatch.export.detectors.ensemble import EnsembleDetector

        return EnsembleDetector(params, build)
    module, name = _MODULES[params.kind]
    detector: Detector = getattr(import_module(f"{__name__}.{module}"), name)(params)
    return detector
