"""Dataset adapters: synthetic generators and readers of real on-disk formats."""
