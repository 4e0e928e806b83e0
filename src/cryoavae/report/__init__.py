"""Figures and report pieces. The only part of the library that imports matplotlib (Agg backend)."""
