"""`python -m services.training`: run the training service."""

from runtime.serve import serve
from services.training.app import TrainingSettings, create_app

if __name__ == "__main__":
    settings = TrainingSettings()
    serve(lambda: create_app(settings), settings)
