"""The training service: organized programmes, self-study, and practical training through postings."""
