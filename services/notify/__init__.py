"""The notify service: who is told what, on which channel (web, chat bots, email), and whether it arrived."""
