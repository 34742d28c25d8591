"""injector: secrets and config templates into a pod's in-memory volume, kept fresh."""

__version__ = "0.1.0"
