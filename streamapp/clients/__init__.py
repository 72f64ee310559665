"""Clients of the services streamapp talks to (broker admin, ...)."""
