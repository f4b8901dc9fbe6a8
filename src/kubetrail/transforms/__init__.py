"""Built-in transforms: pure RecordBatch -> RecordBatch steps."""
