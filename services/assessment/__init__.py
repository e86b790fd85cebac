"""The assessment service: cycles, evaluations, check-ins, care and reminders, exits."""
