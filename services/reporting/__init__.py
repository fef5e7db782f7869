"""The reporting service: the Office's status reports, built from the event stream alone."""
