"""`python -m services.notify`: run the notify service."""

from runtime.serve import serve
from services.notify.app import NotifySettings, create_app

if __name__ == "__main__":
    settings = NotifySettings()
    serve(lambda: create_app(settings), settings)
