"""Fan-out and collection: the Faust agent shell (`app`) and its collaborators: the requests
table, the sender of tasks and status events, the finisher of requests, the timers."""
