"""The retraining handler: makes each policy's EventBridge Scheduler schedule match its record."""
