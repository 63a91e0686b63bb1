"""asyncjob-exporter: Prometheus metrics for asynchronous job APIs."""

__version__ = "0.1.0"
