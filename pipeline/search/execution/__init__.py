"""Executing a search's trials (map: see below, filled in by the split)."""
