"""Runs the same lifecycle without a cluster: workloads as local processes (`yolo-operator run`)."""
