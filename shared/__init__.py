"""Mechanisms every service shares: event contracts, event store, outbox relay, inbox, commands."""
