"""`yolo-workload dev`: JupyterLab (token required) and an OpenSSH server (keys only), as the non-root user."""
