"""braggsieve.geometry layer."""
