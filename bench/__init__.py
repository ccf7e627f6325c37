"""Benchmarks: ``python -m bench`` (``make bench``) runs them all and writes bench/results/.

Each benchmark module has ``run(*, quick: bool = False) -> dict`` returning its figures, each
beside its baseline and ceiling measured in the same run (DESIGN.md, "Benchmarks").
"""
