"""`xpubench serve`: one model behind the Open Inference Protocol (KServe v2), over REST and gRPC.

Triton's three parts, kept apart: the queue policy (policy.py, data), the dynamic batcher that
forms batches from the queue (batcher.py), and the model instances that run them (instances.py).
The transports (http.py, grpc.py) know only HostedModel (model.py).
"""
