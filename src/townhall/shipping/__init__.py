"""Shipping: shipments with a carrier, the last step of the order saga (issue 21)."""
