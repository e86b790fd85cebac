"""The shared runtime of every service: event store, outbox relay, subscribers, HTTP, auth."""
