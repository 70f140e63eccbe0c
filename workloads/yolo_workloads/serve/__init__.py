"""`yolo-workload` serve."""
