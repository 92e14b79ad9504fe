"""The server-rendered site: the leaderboard and submission pages (Jinja2 templates, inline SVG charts,
a little vanilla JS; every asset served by the app itself)."""
