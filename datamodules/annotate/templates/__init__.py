"""Prompt templates of the rationale annotation (data only). A package so the wheel ships them."""
