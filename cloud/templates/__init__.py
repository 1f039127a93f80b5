"""HTML templates of the dashboard (string.Template; package data)."""
