"""Status: the status topic read back into a view, manual tasks, masking of identifiers."""
