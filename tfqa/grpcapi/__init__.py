"""TensorFlow Serving's gRPC API (`PredictionService`, `ModelService`) over the serving layer, beside `tfqa.rest`."""
