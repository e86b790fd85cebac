"""Event contracts shared by every service: the envelope, the events, topics, upcasters."""
