"""The transport-free serving layer: loaded export versions and their policy, batching, answers, error codes.

Front ends (`tfqa.rest` for TF Serving's REST API, a gRPC front end) import it
and never each other; nothing here knows HTTP or gRPC.
"""
