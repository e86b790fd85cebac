"""Faults at random moments while work flows, and checkers that count what was lost or doubled (`./dev faults`)."""
