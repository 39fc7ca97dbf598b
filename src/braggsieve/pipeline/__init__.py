"""braggsieve.pipeline layer."""
