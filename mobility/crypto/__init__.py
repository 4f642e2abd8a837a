"""mobility/crypto package."""
