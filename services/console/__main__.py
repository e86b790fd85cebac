"""`python -m services.console`: run the console (the platform's one address)."""

from runtime.serve import serve
from services.console.app import ConsoleSettings, create_app

if __name__ == "__main__":
    settings = ConsoleSettings()
    serve(lambda: create_app(settings), settings)
