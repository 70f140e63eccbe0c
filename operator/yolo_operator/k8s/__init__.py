"""The only package that talks to the API server: apply, read, patch status, post events."""
