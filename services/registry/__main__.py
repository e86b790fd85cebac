"""`python -m services.registry`: run the registry service."""

from runtime.serve import serve
from services.registry.app import RegistrySettings, create_app

if __name__ == "__main__":
    settings = RegistrySettings()
    serve(lambda: create_app(settings), settings)
