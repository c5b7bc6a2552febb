"""Ingest: opening and checking pushed batches before they are stored."""

from gateway.ingest._open import BatchOpener, OpenedBatch, parse_header, signed_message

__all__ = ["BatchOpener", "OpenedBatch", "parse_header", "signed_message"]
