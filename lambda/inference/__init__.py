"""The inference function: API Gateway's ``POST /v1/endpoints/{endpoint}/invocations`` to
SageMaker ``InvokeEndpoint``, with credentials bound to the calling client's tenant."""
