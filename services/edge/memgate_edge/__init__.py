"""memgate edge: the public HTTP surface (OpenAI API, memory API, dashboard, health)."""
