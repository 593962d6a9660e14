"""Persistence behind one protocol: MongoDB in production, memory in embedded mode."""
