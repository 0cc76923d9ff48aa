"""Shared leaves that every process imports (the manager, NFs, the notebook side, the face).
Nothing here imports anything above onvm.common; onvm.common.abi alone imports the compiled core."""
