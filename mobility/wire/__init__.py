"""mobility/wire package."""
