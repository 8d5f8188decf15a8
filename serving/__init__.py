"""Serving a model on Ray Serve: the application's settings (config), what a replica does
without Ray (service: request checks, batched answers), the HTTP deployment (app)."""
