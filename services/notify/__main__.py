"""`python -m services.notify`: run the notify service."""

from runtime.serve import main
from services.notify.app import NotifySettings, create_app

if __name__ == "__main__":
    main(NotifySettings, create_app)
