"""Learning a machine's normal on the gateway: NumPy detectors and the learner."""
