"""Operator tooling: the local supervisor behind `make run`, the demo department, projection rebuilds."""
