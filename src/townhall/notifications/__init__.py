"""Notifications: email, SMS, push and in-app, delivered asynchronously through real providers."""
