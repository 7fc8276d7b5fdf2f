"""The transport-free serving layer under the REST and gRPC front ends (issue 23)."""
