"""The `saga_mode` fixture (every saga scenario runs once per mode of `SAGA_MODES`)."""

from support.orders import saga_mode

__all__ = ["saga_mode"]
