"""`python -m services.console`: run the console (the platform's one address)."""

from runtime.serve import main
from services.console.app import create_app
from services.console.settings import ConsoleSettings

if __name__ == "__main__":
    main(ConsoleSettings, create_app)
