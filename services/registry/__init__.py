"""The registry service: org units, cadres entering and leaving the pool, mentors, leaders."""
