"""Shared building blocks used by several model families."""
