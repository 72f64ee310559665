"""Operator tools that act on a running platform: ``streamapp replay`` and ``streamapp status``."""
