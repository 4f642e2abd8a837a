"""mobility/dataplane package."""
