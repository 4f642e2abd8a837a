"""mobility/service package."""
