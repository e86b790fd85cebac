"""`python -m services.selection`: run the selection service."""

from runtime.serve import main
from services.selection.app import SelectionSettings, create_app

if __name__ == "__main__":
    main(SelectionSettings, create_app)
