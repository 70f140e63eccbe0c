"""`yolo-workload` datasets."""
