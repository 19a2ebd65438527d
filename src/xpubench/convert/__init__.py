"""Conversions from one artifact format to another."""
