"""The serving runtime: loaded export versions, TF Serving's REST JSON, the local server and the client."""
