"""Built-in outputs: encode(batch) -> bytes plus an I/O write."""
