"""Incremental output parsers: model text → text, tool-call and reasoning events. One per format."""
