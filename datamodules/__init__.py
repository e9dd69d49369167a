"""VersusQ datamodules package."""
