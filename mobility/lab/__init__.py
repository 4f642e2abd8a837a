"""mobility/lab package."""
