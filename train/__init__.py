"""Training side of vitaledge: data splits, class balancing, the model zoo, fit, evaluate.

TensorFlow is imported lazily through :mod:`vitaledge.train.backend`, which selects Keras 2
(tf_keras) before TensorFlow loads, because tensorflow-model-optimization needs it.
"""
