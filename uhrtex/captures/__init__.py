"""Captures: the format (format.py), the chunked store (store.py), folder ingest (ingest.py), renderers."""
