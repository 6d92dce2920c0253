"""Lifecycle: the pure reducer (state + event -> state + effects), deadlines, stored state, the
deadline timer's watchlist, the recovery index of open requests."""
