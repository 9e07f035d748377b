"""Model families, one file each; each registers its named presets on import."""
