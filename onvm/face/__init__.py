"""What users run: the CLI's commands and the tools behind them."""
