"""The launch handler: training requests from SQS to SageMaker ``CreateTrainingJob``, tuning
requests to ``CreateHyperParameterTuningJob``."""
