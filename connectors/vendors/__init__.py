"""Built-in connectors for the processors our customers use."""
