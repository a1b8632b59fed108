"""Experiment configs: one `get_config()` per file; the paper's runs import `default.py` and change fields."""
