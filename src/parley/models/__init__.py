"""Which models exist, where their files are, and which are loaded."""
