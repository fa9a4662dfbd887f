"""The HTTP service: FastAPI app (`service.app.create_app`), settings, routes, the web page."""
