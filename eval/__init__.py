"""Penny's evaluation: datasets, metrics, runs and reports comparing local, paid and cascade answers."""
