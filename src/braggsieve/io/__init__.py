"""braggsieve.io layer."""
