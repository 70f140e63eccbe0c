"""Thin Kopf wiring, one module per kind: parse → decide → apply → one status patch."""
