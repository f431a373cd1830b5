"""Payments: captures and refunds behind a payment gateway, steps of the order saga (issue 21).

Other modules reach it only through `townhall.payments.events`: the commands it takes and the
events it publishes.
"""
