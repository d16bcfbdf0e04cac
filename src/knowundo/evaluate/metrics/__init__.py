"""The built-in metrics, one file each (see :mod:`knowundo.evaluate.metric`); every module here is imported on
first use of the registry."""
