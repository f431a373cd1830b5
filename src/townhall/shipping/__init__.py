"""Shipping: shipments with a carrier, the last step of the order saga (issue 21).

Other modules reach it only through `townhall.shipping.events`: the commands it takes and the
events it publishes.
"""
