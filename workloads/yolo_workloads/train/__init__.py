"""`yolo-workload` train."""
