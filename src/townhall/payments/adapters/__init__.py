"""The payment gateways: an in-memory provider simulator (the default) and Stripe over HTTP."""
