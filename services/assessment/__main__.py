"""`python -m services.assessment`: run the assessment service."""

from runtime.serve import main
from services.assessment.app import AssessmentSettings, create_app

if __name__ == "__main__":
    main(AssessmentSettings, create_app)
