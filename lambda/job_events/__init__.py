"""The job-events handler: SageMaker training job state changes (EventBridge via SQS)."""
