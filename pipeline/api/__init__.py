"""The submit-and-poll HTTP API (FastAPI). ``create_app`` builds it from its dependencies."""
