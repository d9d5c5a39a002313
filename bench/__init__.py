"""Benchmarks of image2model against real processes (`make bench`; see bench/README.md)."""
