"""`yolo-workload` tune."""
