"""The audit service: replay any past day, prove nothing changed, hand auditors a verifiable record."""
