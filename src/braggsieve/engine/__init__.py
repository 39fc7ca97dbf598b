"""braggsieve.engine layer."""
