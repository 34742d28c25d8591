"""The config: ``model`` (frozen dataclasses, the shape) and ``load`` (YAML → model, field-path errors)."""
