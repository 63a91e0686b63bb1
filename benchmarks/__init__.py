"""Benchmarks of asyncjob-exporter against a naive baseline; entry point: benchmarks.run."""
