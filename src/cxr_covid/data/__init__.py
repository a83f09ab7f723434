"""Datasets: sources, download, catalogue, split, augment, and the one image decode path."""
