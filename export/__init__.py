"""Offline work: datasets, training, ONNX export, calibration, evaluation and model bundles."""
