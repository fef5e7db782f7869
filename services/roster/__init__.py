"""The roster service: the organisation directory, remote-work plans, daily rosters and presence."""
