"""The docker-free local runner of an exported pipeline definition."""
