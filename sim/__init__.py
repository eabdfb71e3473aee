"""The machine simulator: seeded vibration and process signals with injectable faults and their
ground truth, and the sender that plays them to a broker, a serial port or a file. A tool for
tests, demos and benchmarks; a gateway does not install it."""
