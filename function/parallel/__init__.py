"""Where batches run: the inference processes (pool), and which one runs what (dispatcher)."""
