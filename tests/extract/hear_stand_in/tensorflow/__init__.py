"""A stand-in for TensorFlow, put on the path of the hear-validator run only when TensorFlow is
not installed. hearvalidator imports ``tensorflow`` at the top but, for a torch model, only asks
``isinstance(model, tf.Module)``; nothing else of TensorFlow runs."""
import contextlib


class Module:  # never the type of a torch model
    pass


def device(name):
    return contextlib.nullcontext()
