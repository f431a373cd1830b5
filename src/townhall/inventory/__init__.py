"""Inventory: products, stock and the reservations orders hold on it (issue 21).

Other modules reach it only through `townhall.inventory.events`: the commands it takes and the
events it publishes.
"""
