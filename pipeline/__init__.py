"""The nightly walk and the model registry: versions of what the service serves."""
