"""edgewatch: anomaly detection for industrial machines, on the gateway beside them.

The folders ``agent/``, ``export/`` and ``kernels/`` at the top of the repository are its
subpackages, linked here, so that they install and import as ``edgewatch.agent``,
``edgewatch.export`` and ``edgewatch.kernels`` and nothing else lands at the top of
site-packages.
"""
