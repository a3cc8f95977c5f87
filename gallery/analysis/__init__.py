"""What is derived from an index version besides search: near-duplicate groups (duplicates)."""
