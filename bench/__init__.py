"""Benchmark harnesses: ``python bench/run.py ingest`` measures agent → gateway ingest (DESIGN §12)."""
