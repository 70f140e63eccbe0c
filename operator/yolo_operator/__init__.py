"""Yolo Operator: runs YOLOv8 (Ultralytics) training and inference on Kubernetes GPU pools."""

__version__ = "0.1.0"
