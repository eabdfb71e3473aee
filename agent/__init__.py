"""The edge runtime: what a gateway installs and runs."""
