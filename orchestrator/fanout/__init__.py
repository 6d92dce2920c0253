"""Fan-out and collection: the Faust agent shell, its collaborators, and the topics it uses."""
