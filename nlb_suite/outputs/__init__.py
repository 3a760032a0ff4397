"""Outputs: submission files (`submission.py`), the results store (`results.py`), and what a run
keeps beside its submission (`artifacts.py`)."""
