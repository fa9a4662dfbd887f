"""Content encoders by architecture, one module each (issue #26)."""
