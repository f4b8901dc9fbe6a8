"""The kubetrail server: receivers -> write-ahead log -> parse -> transforms -> store.

``wal`` makes acknowledgements durable, ``pipeline`` turns WAL records into stored batches,
``backpressure`` bounds memory in bytes, ``auth``/``tls`` secure the listeners, ``app`` runs it all.
"""
