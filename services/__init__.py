"""The platform's services, each owning its data and talking to the others through Kafka."""
