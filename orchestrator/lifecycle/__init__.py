"""Lifecycle: the pure reducer (state + event -> state + effects), deadlines, stored state."""
