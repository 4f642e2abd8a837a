"""had package."""
