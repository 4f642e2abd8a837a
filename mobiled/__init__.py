"""mobiled package."""
