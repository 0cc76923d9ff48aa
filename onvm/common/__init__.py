"""Shared leaves, imported by every process (see LAYOUT.md)."""
