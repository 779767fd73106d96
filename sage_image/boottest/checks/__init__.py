"""Check definitions (checks.yaml), the runner and a test session."""
