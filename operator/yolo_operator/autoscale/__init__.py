"""PURE: the HPA algorithm over metric samples and history → desired replicas."""
