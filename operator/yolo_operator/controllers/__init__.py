"""The reconcilers, one module per kind on one skeleton (`skeleton`): fetch from the watch-fed cache → validate →
observe → pure decide (`lifecycle`) → apply → one status write, with the same error, metric, condition and Event
handling for both kinds; `access` and `stalled` report the API server's refusals. Independent of Kopf: `handlers/`
queues their work on the `runtime/` work queue.
"""
