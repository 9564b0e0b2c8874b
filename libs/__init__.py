"""Replaceable parts of Lookout: one folder per kind, each with a base class and a registry."""
