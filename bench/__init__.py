"""Benchmarks of the model and the service: ``python -m bench.model``, ``python -m bench.run``,
``python -m bench.compare``. See ``bench/README.md``."""
