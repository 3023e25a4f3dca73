"""Submit, check, monitor and download: what happens to a task over its life."""
