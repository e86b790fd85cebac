"""Exchange with the spreadsheets and forms departments already keep: imports, templates, the appointment form."""
