"""Benchmark harnesses: ``python bench/run.py ingest`` measures agent → gateway ingest against the
bare pipeline (DESIGN §12); ``python bench/run.py indexes`` measures the store's index profiles."""
