"""The notify service: tells the right people what is due, over channels that really deliver, exactly once."""
