"""Visualisation helpers: palettes (overlays and plots arrive with the node and the metrics)."""
