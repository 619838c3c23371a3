"""Layers and blocks that more than one task's networks use."""
