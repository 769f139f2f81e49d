"""Temporal re-localization baselines (ECCV 2018 Table 1 and Table 2)."""
