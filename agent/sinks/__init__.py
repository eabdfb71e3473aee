"""Where alerts go: the MQTT forwarder behind its disk spool, stdout and JSON-lines files."""
