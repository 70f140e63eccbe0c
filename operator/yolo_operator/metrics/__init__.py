"""Reading workload metrics (pod scrape, Prometheus query) and the operator's own Prometheus metrics."""
