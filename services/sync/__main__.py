"""`python -m services.sync`: run the sync service."""

from runtime.serve import main
from services.sync.app import SyncSettings, create_app

if __name__ == "__main__":
    main(SyncSettings, create_app)
