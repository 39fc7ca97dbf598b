"""braggsieve.mask layer."""
