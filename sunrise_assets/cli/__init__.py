"""`sunrise`, the command line: ``app`` assembles the command groups; ``console`` holds the shared
output, progress and error helpers."""
