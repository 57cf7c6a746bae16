"""Signal -> model input, one module per task: ECG emotion windows, multimodal ECG+GSR+face
inputs, log-mel images of speech, audio clips, face images."""

