"""`python -m services.assessment`: run the assessment service."""

from runtime.serve import serve
from services.assessment.app import AssessmentSettings, create_app

if __name__ == "__main__":
    settings = AssessmentSettings()
    serve(lambda: create_app(settings), settings)
