"""What runs the controllers, kind-neutral and without Kopf: the watch-fed copies they read (`informer`, `cache`),
the keyed work queue every reconcile goes through (`workqueue`), the periodic resync that feeds it (`resync`), and
the `Runtime` (`manager`) that holds the cache and the queue and starts and stops them.

Why one package (issue 21): these pieces were spread over `handlers/` and `k8s/`; together they are the controller
runtime the reconcilers (`controllers/`) run on, below them and above the API client (`k8s/`).
"""
