"""Root conftest for the project's own tests (the plugin itself loads through its entry point)."""
