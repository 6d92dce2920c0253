"""Runtime: configuration, the embedded broker, running the whole stack, health, demo data."""
