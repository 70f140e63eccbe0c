"""Fetching sources named by URI (s3://, https://, file://) into a per-content cache, for `yolo-workload fetch`.

The operator runs the verb as an init container of the standard image; the local runner calls it in-process.
Nothing here reaches the network unless a spec names a URI: the operator renders no fetch step otherwise.
"""
