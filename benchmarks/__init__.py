"""Benchmarks of breastcls against a faithful reference of the seed blog's pipeline.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); see ``docs/performance.md``.
"""
