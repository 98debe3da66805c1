"""Nodes of the prompt tools: template, compress, truncate, token count."""
