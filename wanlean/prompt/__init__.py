"""The prompt tools: words, protected spans, the template, compression, truncation, batch preparation."""
