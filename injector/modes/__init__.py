"""The modes of the CLI: init, sidecar, exec, validate and the dry run, each built on the one engine."""
