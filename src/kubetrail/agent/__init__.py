"""The node agent (``kubetrail agent``): discover, tail, checkpoint on acknowledgement, ship raw bytes.

Modules by role: ``discovery`` (globs + inotify), ``identity`` (dev, inode, first-line fingerprint),
``tailer`` (line cutter, one stream), ``harvester`` (all streams, rotation, checkpoints), ``checkpoints``
(SQLite WAL), ``shipper`` (batches, compression, HTTPS, retries), ``journald`` (journalctl + spool),
``kube`` (pod metadata), ``ratelimit``, ``metrics``, ``app`` (the loop), ``cli``. Kept free of pyarrow
and other server-side imports: every node runs this.
"""

__all__: list[str] = []
