"""braggsieve.simulate layer."""
