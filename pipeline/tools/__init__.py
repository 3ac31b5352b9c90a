"""Developer tools (``python -m pipeline.tools.<name>``); no tool imports another."""
