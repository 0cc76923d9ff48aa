"""Shared leaves, imported by every process (the manager, NFs, the notebook): they import
nothing above onvm.common."""
