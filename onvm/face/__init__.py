"""What users run: the command line, JupyterLab, the course hub, grading."""
