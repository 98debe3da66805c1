"""The Wan2.2 video path: model facts, sessions, memory placement, text encoding, sampling and cost."""
