"""Tasks: a task turns a dataset into prompts and scores generated tokens (``tasks/catalogue.py``
lists them)."""
