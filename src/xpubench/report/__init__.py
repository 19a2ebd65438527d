"""Turning stored cells into tables people read."""
