"""Bundled normalised MOS label lists (data only; see README.md). A package so the wheel ships them."""
