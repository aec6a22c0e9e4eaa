"""What goes together: texts queued in lanes by length and taken as batches (knows no worker)."""
