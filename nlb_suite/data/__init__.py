"""Data in: NWB reading, the data directory, DANDI fetching."""
