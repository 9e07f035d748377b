"""Datasets: bundled real data, loaders for users' files, splits and normalisation."""
