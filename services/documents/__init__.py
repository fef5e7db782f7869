"""The documents service: registers, drafts to signature, secret documents, tasks, meetings."""
