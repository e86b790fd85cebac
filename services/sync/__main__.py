"""`python -m services.sync`: run the sync service."""

from runtime.serve import serve
from services.sync.app import SyncSettings, create_app

if __name__ == "__main__":
    settings = SyncSettings()
    serve(lambda: create_app(settings), settings)
