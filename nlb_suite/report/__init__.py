"""The report: leaderboard tables (`tables.py`) with published results (`published.py`), the
figures (`figures.py`) and what they are drawn from (`views.py`), and the HTML page (`html.py`)."""
