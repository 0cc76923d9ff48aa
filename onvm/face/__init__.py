"""What users run: the onvm CLI, JupyterLab sessions, grading, the kernel, onvm doctor,
the demo.  Nothing outside onvm.face imports it."""
