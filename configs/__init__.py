"""Experiment configs: one `get_config()` per file. `base.py` names every field; the tiny job (`default.py`) and
the paper runs import it and change fields."""
