"""`python -m services.audit`: run the audit service."""

from runtime.serve import serve
from services.audit.app import AuditSettings, create_app

if __name__ == "__main__":
    settings = AuditSettings()
    serve(lambda: create_app(settings), settings)
