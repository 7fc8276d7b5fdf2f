"""The REST front end: TF Serving's REST JSON, the local server and the client, on `tfqa.serving`."""
