"""The roster service: the organisation directory, remote-work plans (rosters and presence to come)."""
