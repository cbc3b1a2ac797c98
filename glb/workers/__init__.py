"""`glb serve --workers N`: the main's worker supervisor, their private wire protocol, and a
worker's remote state."""
