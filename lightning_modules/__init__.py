"""VersusQ lightning_modules package."""
