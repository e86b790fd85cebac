"""`python -m services.registry`: run the registry service."""

from runtime.serve import main
from services.registry.app import RegistrySettings, create_app

if __name__ == "__main__":
    main(RegistrySettings, create_app)
