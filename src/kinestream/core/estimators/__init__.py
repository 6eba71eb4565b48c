"""Acceleration estimators: one small protocol, three methods."""
