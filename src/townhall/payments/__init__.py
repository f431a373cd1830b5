"""Payments: captures and refunds behind a payment gateway, steps of the order saga (issue 21)."""
