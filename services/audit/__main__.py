"""`python -m services.audit`: run the audit service."""

from runtime.serve import main
from services.audit.app import AuditSettings, create_app

if __name__ == "__main__":
    main(AuditSettings, create_app)
