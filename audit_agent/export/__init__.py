"""Exports for monitoring: Prometheus textfile metrics and HTTP push with an on-disk spool."""
