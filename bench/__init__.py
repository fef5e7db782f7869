"""`make bench`: the province benchmark (issue 8). Not part of `make test`.

Run with `python -m bench` (see docs/benchmark.md). Everything it creates (a namespace on the
broker, databases named `bench_<run>_*`) is removed when it finishes.
"""
