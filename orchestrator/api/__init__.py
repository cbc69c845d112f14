"""The daemon's HTTP API: REST routes, bearer tokens and signed webhooks."""
