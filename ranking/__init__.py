"""VersusQ ranking package."""
