"""Kafka and PostgreSQL without Docker, and the whole platform on one machine."""
