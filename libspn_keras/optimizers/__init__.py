"""Optimizers specific to SPNs. Any ``keras.optimizers`` optimizer can be used for gradient training."""

__all__: list[str] = []
