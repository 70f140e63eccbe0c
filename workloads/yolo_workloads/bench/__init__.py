"""`yolo-workload` bench."""
