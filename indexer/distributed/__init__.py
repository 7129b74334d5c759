"""Ingest spread over a Ray cluster (Ray Data): decode in CPU tasks, embed in an actor pool
with the server's engine code, write through the server's ingest write step."""
