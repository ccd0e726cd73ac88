"""Online pieces of the monitoring app: streaming QRS detection and its scoring."""
