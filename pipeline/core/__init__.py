"""Shared plumbing: the CLI wrapper, params.yaml sections, file and device helpers, machine facts."""
