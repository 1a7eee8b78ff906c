"""The deploy handler: deployment requests from SQS to SageMaker endpoints and monitoring."""
