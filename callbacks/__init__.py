"""VersusQ callbacks package."""
