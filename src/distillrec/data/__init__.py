"""Data: sources (readers, built-in datasets), dataset (tables + id maps), splits."""
