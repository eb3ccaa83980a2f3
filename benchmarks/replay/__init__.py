"""The replay benchmark: search methods compared on recorded learning curves (README.md here)."""
