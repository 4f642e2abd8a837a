"""ard package."""
