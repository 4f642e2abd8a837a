"""natt package."""
