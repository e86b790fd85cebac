"""`python -m services.training`: run the training service."""

from runtime.serve import main
from services.training.app import TrainingSettings, create_app

if __name__ == "__main__":
    main(TrainingSettings, create_app)
